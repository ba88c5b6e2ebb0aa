"""Source loaders: one module per kind, each turning a `SourceSpec` into a `LoadResult`."""

from __future__ import annotations

from pathlib import Path

from rag_assets.sources.document import DOCUMENT_SCHEMA, Document, Failure, LoadResult
from rag_assets.sources.spec import SourceSpec, load_sources, source_fingerprint, sources_file_path

__all__ = [
    "DOCUMENT_SCHEMA",
    "Document",
    "Failure",
    "LoadResult",
    "SourceSpec",
    "load_source",
    "load_sources",
    "source_fingerprint",
    "sources_file_path",
]


def load_source(spec: SourceSpec, base_dir: Path) -> LoadResult:
    """Load every document of a source; unreadable inputs become `Failure`s, never exceptions."""
    from rag_assets.sources import loaders

    return loaders.LOADERS[spec.kind](spec, base_dir)
