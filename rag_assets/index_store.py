"""The Milvus collection that holds chunks: schema, sync of one source's chunks, deletes.

Dense vectors (HNSW, cosine) and a BM25 sparse field computed by Milvus's own BM25 function over
the chunk text. Row ids are chunk ids (content hashes), so syncing is a set difference.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from pymilvus import DataType, Function, FunctionType, MilvusClient

TEXT_MAX_CHARS = 65535
BM25_ANALYZER = {
    "tokenizer": "standard",
    "filter": ["lowercase", {"type": "stop", "stop_words": ["_english_"]}, {"type": "stemmer", "language": "english"}],
}
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
OUTPUT_FIELDS = ["chunk_id", "doc_id", "source", "title", "link", "text", "heading_path", "position", "sensitive"]
WRITE_BATCH = int(os.environ.get("RAG_MILVUS_WRITE_BATCH", "1000"))
REWRITE_SUFFIX = "__rewrite"  # the copy a Milvus Lite rewrite swaps in (see `rewrite_collection`)


def ensure_hybrid_collection(client: MilvusClient, name: str, dim: int, scalars: list[tuple[str, DataType, dict]],
                             filter_field: str, text_max_chars: int) -> None:
    """Create, if missing, a collection of `scalars` (the first is the primary key), a BM25-analysed `text`,
    a dense `vector` (HNSW, cosine) and a `sparse` field from Milvus's BM25 function, with an inverted
    index on `filter_field`; then load it."""
    if not client.has_collection(name):
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        for i, (field, dtype, params) in enumerate(scalars):
            schema.add_field(field, dtype, is_primary=i == 0, **params)
        schema.add_field("text", DataType.VARCHAR, max_length=text_max_chars, enable_analyzer=True, analyzer_params=BM25_ANALYZER)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]))
        index_params = client.prepare_index_params()
        index_params.add_index("vector", index_type="HNSW", metric_type="COSINE", params=HNSW_PARAMS)
        index_params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        index_params.add_index(filter_field, index_type="INVERTED")
        client.create_collection(name, schema=schema, index_params=index_params)
    client.load_collection(name)


CHUNK_FIELDS: list[tuple[str, DataType, dict]] = [
    ("chunk_id", DataType.VARCHAR, {"max_length": 64}),
    ("doc_id", DataType.VARCHAR, {"max_length": 64}),
    ("source", DataType.VARCHAR, {"max_length": 64}),
    ("title", DataType.VARCHAR, {"max_length": 4096}),
    ("link", DataType.VARCHAR, {"max_length": 8192}),
    ("heading_path", DataType.VARCHAR, {"max_length": 4096}),
    ("position", DataType.INT32, {}),
    ("sensitive", DataType.BOOL, {}),
]


def ensure_collection(client: MilvusClient, name: str, dim: int) -> None:
    """Create the chunks collection with its indexes if missing, and load it."""
    ensure_hybrid_collection(client, name, dim, CHUNK_FIELDS, "source", TEXT_MAX_CHARS)


def index_parameters(dim: int) -> dict:
    return {"dense": {"type": "HNSW", "metric": "COSINE", "dim": dim, **HNSW_PARAMS}, "sparse": {"type": "BM25", "analyzer": BM25_ANALYZER}}


def quote_literal(value: str) -> str:
    """A string as a Milvus filter-expression literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def source_filter(sources: list[str]) -> str:
    return "source in [" + ", ".join(quote_literal(s) for s in sources) + "]"


def ids_for_source(client: MilvusClient, name: str, source: str) -> set[str]:
    """Every chunk id stored for a source (paged with a query iterator)."""
    ids: set[str] = set()
    iterator = client.query_iterator(name, filter=source_filter([source]), output_fields=["chunk_id"], batch_size=4096)
    try:
        while batch := iterator.next():
            ids.update(row["chunk_id"] for row in batch)
    finally:
        iterator.close()
    return ids


def count_for_source(client: MilvusClient, name: str, source: str) -> int:
    rows = client.query(name, filter=source_filter([source]), output_fields=["count(*)"])
    return int(rows[0]["count(*)"]) if rows else 0


@dataclass(frozen=True)
class SyncResult:
    inserted: int
    deleted: int
    unchanged: int


def _rows(chunks: pl.DataFrame, vectors: np.ndarray) -> list[dict]:
    rows = chunks.select(
        "chunk_id", "doc_id", "source",
        pl.col("title").str.slice(0, 1000), pl.col("link").str.slice(0, 2000),
        pl.col("heading_path").str.slice(0, 1000), "position", "sensitive",
        pl.col("text").str.slice(0, TEXT_MAX_CHARS // 4),  # VARCHAR limit is in bytes; chunks are far shorter
    ).to_dicts()
    for row, vec in zip(rows, vectors):
        row["vector"] = vec.tolist()
    return rows


def sync_source(client: MilvusClient, name: str, source: str, chunks: pl.DataFrame, vectors: np.ndarray) -> SyncResult:
    """Make the collection hold exactly `chunks` for `source`: upsert the new ids, delete the gone ones.

    Idempotent and safe to re-run after a crash at any point: upserts by primary key cannot
    duplicate, and the diff is recomputed from what the collection holds.
    """
    wanted = chunks["chunk_id"].to_list()
    existing = ids_for_source(client, name, source)
    new_mask = np.array([cid not in existing for cid in wanted], dtype=bool)
    stale = sorted(existing.difference(wanted))
    new_chunks = chunks.filter(pl.Series(new_mask)) if len(wanted) else chunks
    new_vectors = vectors[new_mask] if len(wanted) else vectors
    for start in range(0, new_chunks.height, WRITE_BATCH):
        client.upsert(name, _rows(new_chunks.slice(start, WRITE_BATCH), new_vectors[start : start + WRITE_BATCH]))
    for start in range(0, len(stale), WRITE_BATCH):
        client.delete(name, ids=stale[start : start + WRITE_BATCH])
    if new_chunks.height or stale:
        client.flush(name)
    return SyncResult(inserted=new_chunks.height, deleted=len(stale), unchanged=len(wanted) - new_chunks.height)


def delete_source(client: MilvusClient, name: str, source: str) -> int:
    """Delete every row of a source; returns how many there were."""
    before = count_for_source(client, name, source)
    if before:
        client.delete(name, filter=source_filter([source]))
        client.flush(name)
    return before


def chunk_collections(client: MilvusClient) -> list[str]:
    return [c for c in client.list_collections() if c.startswith("chunks__") and not c.endswith(REWRITE_SUFFIX)]


def is_milvus_lite(client: MilvusClient) -> bool:
    """Milvus Lite (a `.db` directory or `milvus-lite server`) reports its version as `milvus_lite-X`."""
    try:
        return str(client.get_server_version()).startswith("milvus_lite")
    except Exception:  # a server that does not say: treat it as Milvus
        return False


def vector_dim(client: MilvusClient, name: str) -> int:
    fields = client.describe_collection(name)["fields"]
    return int(next(f["params"]["dim"] for f in fields if f["name"] == "vector"))


def _live_fields(client: MilvusClient, name: str) -> list[str]:
    return [f["name"] for f in client.describe_collection(name)["fields"] if not f.get("is_function_output")]


def copy_rows(client: MilvusClient, source: str, target: str) -> int:
    """Upsert every live row of `source` into `target` (same schema); returns how many."""
    fields = _live_fields(client, source)
    client.load_collection(source)
    copied = 0
    iterator = client.query_iterator(source, filter="", output_fields=fields, batch_size=WRITE_BATCH)
    try:
        while batch := iterator.next():
            client.upsert(target, [{k: row[k] for k in fields} for row in batch])
            copied += len(batch)
    finally:
        iterator.close()
    client.flush(target)
    return copied


def recover_rewrite(client: MilvusClient, name: str) -> None:
    """Settle a rewrite of `name` that crashed: rename its copy into place if `name` is gone, else merge
    the copy into `name` (never drop the only copy). Call before deleting anything from `name`."""
    tmp = name + REWRITE_SUFFIX
    if not client.has_collection(tmp):
        return
    if client.has_collection(name):
        copy_rows(client, tmp, name)
        client.drop_collection(tmp)
    else:
        client.rename_collection(tmp, name)


def rewrite_collection(client: MilvusClient, name: str, create: Callable[[str, int], None]) -> int:
    """Copy the live rows of `name` into a fresh collection (made by `create(name, dim)`) and swap it in.

    Milvus Lite's manual compaction is a no-op (measured, 3.2.2: the deleted rows' text stays in the
    segment's Parquet file), so this is how its deletes become physical. Readers see no collection
    between the drop and the rename (milliseconds); a collection re-created in that gap (an index step
    writing) gets the copy merged in. Writes made to `name` during the copy are lost, so callers re-sync
    afterwards (`purge_sources` does). Returns the rows kept.
    """
    recover_rewrite(client, name)
    tmp = name + REWRITE_SUFFIX
    create(tmp, vector_dim(client, name))
    kept = copy_rows(client, name, tmp)
    client.drop_collection(name)
    try:
        client.rename_collection(tmp, name)
    except Exception:
        if not client.has_collection(name):
            raise
        recover_rewrite(client, name)
    client.load_collection(name)
    return kept


def count_rows(client: MilvusClient, name: str) -> int:
    rows = client.query(name, filter="", output_fields=["count(*)"])
    return int(rows[0]["count(*)"]) if rows else 0


def reclaim_deleted(client: MilvusClient, name: str, create: Callable[[str, int], None], timeout_s: float = 600) -> str:
    """Make deleted rows leave the storage: a compaction awaited on a Milvus server, a rewrite on Milvus Lite."""
    if is_milvus_lite(client):
        rewrite_collection(client, name, create)
        return "rewritten"
    job = client.compact(name)
    deadline = time.monotonic() + timeout_s
    while str(client.get_compaction_state(job)) != "Completed":
        if time.monotonic() > deadline:
            raise TimeoutError(f"compaction {job} of {name} not finished after {timeout_s:.0f}s")
        time.sleep(1)
    return "compacted"
