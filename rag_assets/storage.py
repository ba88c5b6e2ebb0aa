"""Storage names: the one place that names what the ingestion of a (source, variant) stores.

Parquet partitions, the embedding-cache folder and the Milvus collection are named from the source and
the variant's ingestion key (a hash of its chunking and embedding settings; empty for the default
settings, which keeps the names of a project that never experiments). Variants with the same ingestion
settings share their stored data; any other two never touch each other's. Nothing else builds these
paths or names: the IO manager, the embedder's cache, the index, the purge and the readers call here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rag_assets.settings import rag_home
from rag_assets.variants import VariantSettings

KEY_SEPARATOR = "@"  # not allowed in source names, so `<source>@<key>` parses back unambiguously
CHUNKS_PREFIX = "chunks__"
SCHEMA_PREFIX = "schema__"


def model_slug(model_id: str) -> str:
    """A model or variant id as a Milvus-safe name part: `local/all-MiniLM-L6-v2` -> `local_all_minilm_l6_v2`."""
    return re.sub(r"[^A-Za-z0-9]+", "_", model_id).strip("_").lower()


def collection_name(model_id: str, ingest_key: str = "") -> str:
    """`chunks__<model>[__<ingest key>]`: another embedding model or other ingestion settings never share a collection."""
    name = CHUNKS_PREFIX + model_slug(model_id)
    if ingest_key:
        name += "__" + model_slug(ingest_key)
    return name[:255]


def schema_collection_name(model_id: str) -> str:
    """The SQL assistant's schema descriptions, one collection per embedding model."""
    return (SCHEMA_PREFIX + model_slug(model_id))[:255]


def _file_stem(source: str, ingest_key: str) -> str:
    if "/" in source or source in {".", ".."} or KEY_SEPARATOR in source:
        raise ValueError(f"unsafe source name for a file name: {source!r}")
    return f"{source}{KEY_SEPARATOR}{ingest_key}" if ingest_key else source


def parse_stem(stem: str) -> tuple[str, str]:
    """`demo@3f2a...` -> ('demo', '3f2a...'); `demo` -> ('demo', '')."""
    source, _, key = stem.partition(KEY_SEPARATOR)
    return source, key


@dataclass(frozen=True)
class StorageNames:
    """Where one (source, ingestion settings) pair keeps its data."""

    source: str
    ingest_key: str

    def parquet(self, assets_root: Path, asset: str) -> Path:
        """`<root>/<asset>/<source>[@<key>].parquet`."""
        return assets_root / asset / f"{_file_stem(self.source, self.ingest_key)}.parquet"

    def collection(self, model_id: str) -> str:
        return collection_name(model_id, self.ingest_key)

    def owns(self, collection: str, default_model_id: str) -> bool:
        """Whether `collection` holds this pair's rows (the default settings' under the configured model)."""
        if self.ingest_key:
            return collection.startswith(CHUNKS_PREFIX) and collection.endswith("__" + model_slug(self.ingest_key))
        return collection == collection_name(default_model_id)

    def cache_dir(self, cache_root: Path) -> Path:
        """The embedding cache folder: shared by every source of one ingestion setting, never across settings."""
        return cache_root / self.ingest_key if self.ingest_key else cache_root


def names_for(source: str, variant: VariantSettings) -> StorageNames:
    return StorageNames(source, variant.ingest_key())


def collection_for(variant: VariantSettings, model_id: str) -> str:
    """The chunks collection a variant searches (the same for every source)."""
    return collection_name(model_id, variant.ingest_key())


def ranker_path() -> Path:
    """The trained ranker (`ranker_model` asset) as JSON."""
    return rag_home() / "models" / "ranker.json"


def unpartitioned_parquet(assets_root: Path, asset: str) -> Path:
    return assets_root / asset / "__all__.parquet"


def stored_partitions(assets_root: Path, asset: str) -> dict[StorageNames, Path]:
    """Every stored Parquet partition of `asset`, by the names it was stored under."""
    folder = assets_root / asset
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.glob("*.parquet")):
        if path.stem != "__all__":
            found[StorageNames(*parse_stem(path.stem))] = path
    return found
