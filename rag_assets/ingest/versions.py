"""Code versions and content-hash data versions of the ingestion assets (what the UI's staleness reads).

A data version is a hash of what a partition holds, not of when it was built: a re-run that changes
nothing keeps its version, so nothing downstream turns stale. Bump a code version when the asset's
logic changes what it stores.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from rag_assets.hashing import sha256_hex

CODE_VERSIONS = {
    "documents": "1", "chunks": "1", "embeddings": "1", "index": "1",
    "evaluation": "1", "experiment_report": "1", "embedding_model": "1", "llm_model": "1", "ranker_model": "1",
}


def frame_version(frame: pl.DataFrame, columns: list[str], *extra: str) -> dg.DataVersion:
    """A hash of `columns` of every row (in order) and of `extra` strings (settings, model ids)."""
    digest = sha256_hex(*extra, *(",".join("" if v is None else str(v) for v in frame[c].to_list()) for c in columns), length=24)
    return dg.DataVersion(digest)
