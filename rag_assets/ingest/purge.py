"""The purge job: a source removed from sources.yaml leaves nothing derived from its text behind.

In order (a retried run redoes what a crashed one left, since the Parquet partitions it reads first
are deleted last): Milvus rows deleted and made physical (compaction, or a rewrite on Milvus Lite);
the embedding-cache entries of its texts (unless another source has the same text) deleted with
`secure_delete`; every ask or SQL run that retrieved or returned its text deleted with its saved answer,
pickled step outputs, compute logs and event log (SQLite files vacuumed); its Parquet partitions
deleted; the warehouse rebuilt and the schema index re-synced without it.
"""

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

from rag_assets.hashing import text_hash
from rag_assets.index_store import (
    chunk_collections, delete_source, ensure_collection, ensure_hybrid_collection,
    ids_for_source, quote_literal, reclaim_deleted, recover_rewrite, sync_source,
)
from rag_assets.inference.results import answers_citing, delete_results, source_tag
from rag_assets.inference.sql.assets import build_from_platform, open_schema_index
from rag_assets.inference.sql.assistant import index_database
from rag_assets.inference.sql.resource import WarehouseResource
from rag_assets.inference.sql.schema_index import SCHEMA_FIELDS, TEXT_MAX_CHARS, database_key
from rag_assets.ingest.partitions import MILVUS_WRITE_POOL, RETRY_TAGS
from rag_assets.io_manager import PolarsParquetIOManager
from rag_assets.jobs import PARQUET_ASSETS
from rag_assets.storage import SCHEMA_PREFIX, StorageNames, schema_collection_name, stored_partitions
from rag_assets.embedding.cache import forget_everywhere, truncate_wal
from resources.embedder import EmbedderResource
from resources.milvus import MilvusResource
from resources.sources import SourcesResource


class PurgeConfig(dg.Config):
    sources: list[str]


@dataclass
class Footprint:
    """What the removed sources left in their stored partitions, read before anything is deleted."""

    text_hashes: set[str] = field(default_factory=set)  # embedding-cache keys of their chunks
    texts: list[str] = field(default_factory=list)  # document titles and texts: recognises SQL answers quoting them
    ids: set[str] = field(default_factory=set)  # doc and chunk ids
    has_chunks: set[str] = field(default_factory=set)  # sources whose chunks partition is still stored


def _partition_files(io_manager: PolarsParquetIOManager, asset: str) -> dict[StorageNames, Path]:
    """Every stored partition of `asset`, of every variant's ingestion settings."""
    return stored_partitions(io_manager.root(), asset)


def read_footprint(io_manager: PolarsParquetIOManager, sources: set[str]) -> Footprint:
    fp = Footprint()
    for names, path in _partition_files(io_manager, "chunks").items():
        if names.source in sources:
            frame = pl.read_parquet(path, columns=["chunk_id", "doc_id", "text_hash"])
            fp.text_hashes.update(frame["text_hash"].to_list())
            fp.ids.update(frame["chunk_id"].to_list() + frame["doc_id"].to_list())
            fp.has_chunks.add(names.source)
    for names, path in _partition_files(io_manager, "documents").items():
        if names.source in sources:
            frame = pl.read_parquet(path, columns=["doc_id", "title", "text"])
            fp.ids.update(frame["doc_id"].to_list())
            fp.texts.extend(t for t in frame["title"].to_list() + frame["text"].to_list() if t)
    return fp


def hashes_kept_by_others(io_manager: PolarsParquetIOManager, sources: set[str]) -> set[str]:
    """Text hashes of every other stored chunks partition: their cache entries must stay."""
    kept: set[str] = set()
    for names, path in _partition_files(io_manager, "chunks").items():
        if names.source not in sources:
            kept.update(pl.read_parquet(path, columns=["text_hash"])["text_hash"].to_list())
    return kept


def runs_citing(instance: dg.DagsterInstance, sources: Iterable[str]) -> set[str]:
    """Ids of the runs tagged as having retrieved text of one of `sources` (an indexed tag lookup)."""
    found: set[str] = set()
    for source in sources:
        found.update(instance.get_run_ids(filters=dg.RunsFilter(tags={source_tag(source): "true"})))
    return found


def scrub_sqlite(path: Path) -> None:
    """VACUUM a SQLite file (deleted rows' bytes sit in free pages until then) and truncate its WAL."""
    if not path.is_file():
        return
    conn = sqlite3.connect(path, timeout=120, isolation_level=None)
    try:
        conn.execute("VACUUM")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            truncate_wal(conn)
    finally:
        conn.close()


def instance_sqlite_files(instance: dg.DagsterInstance) -> list[Path]:
    """The shared SQLite files of a local instance's run and event-log storage (none for Postgres or MySQL)."""
    files = []
    if isinstance(instance.run_storage, SqliteRunStorage):
        files.append(Path(instance.run_storage._conn_string.removeprefix("sqlite:///")))  # noqa: SLF001 (no public accessor)
    if isinstance(instance.event_log_storage, SqliteEventLogStorage):
        files.append(Path(instance.event_log_storage.path_for_shard(INDEX_SHARD_NAME)))
    return files


def forget_runs(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> int:
    """Delete runs from Dagster: compute logs, run record, events; on SQLite also the run's event-log
    shard file, then vacuum the shared files so the deleted rows' bytes are gone."""
    run_ids = [r for r in run_ids if instance.has_run(r)]
    events = instance.event_log_storage
    for run_id in run_ids:
        try:
            instance.compute_log_manager.delete_logs(prefix=[run_id])
        except NotImplementedError:
            pass
        instance.delete_run(run_id)
        if isinstance(events, SqliteEventLogStorage):
            shard = Path(events.path_for_shard(run_id))
            for path in (shard, shard.with_name(shard.name + "-wal"), shard.with_name(shard.name + "-shm")):
                path.unlink(missing_ok=True)
    if run_ids:
        for path in instance_sqlite_files(instance):
            scrub_sqlite(path)
    return len(run_ids)


def _collection_factory(client, name: str):
    """How to create an empty collection shaped like `name` (for a Milvus Lite rewrite)."""
    if name.startswith(SCHEMA_PREFIX):
        return lambda new, dim: ensure_hybrid_collection(client, new, dim, SCHEMA_FIELDS, "database", TEXT_MAX_CHARS)
    return lambda new, dim: ensure_collection(client, new, dim)


def resync_remaining(client, name: str, model_id: str, io_manager: PolarsParquetIOManager, removed: set[str]) -> list[str]:
    """Re-sync every other stored source of collection `name` whose ids there differ from its chunks' (an index
    step that wrote while the collection was being rewritten); returns the sources re-synced."""
    chunk_files, embedding_files = _partition_files(io_manager, "chunks"), _partition_files(io_manager, "embeddings")
    repaired = []
    for names in sorted(chunk_files, key=lambda n: (n.source, n.ingest_key)):
        if names.source in removed or not names.owns(name, model_id):
            continue
        chunks = pl.read_parquet(chunk_files[names])
        if names not in embedding_files or ids_for_source(client, name, names.source) == set(chunks["chunk_id"].to_list()):
            continue
        embeddings = pl.read_parquet(embedding_files[names])
        if embeddings["chunk_id"].to_list() == chunks["chunk_id"].to_list():  # else stale: its next ingest run syncs it
            sync_source(client, name, names.source, chunks, embeddings["vector"].to_numpy().astype(np.float32))
            repaired.append(names.source)
    return repaired


def resync_schema_index(milvus: MilvusResource, embedder: EmbedderResource, warehouse_path: Path) -> dict:
    """Re-describe the rebuilt warehouse in the schema index; the stale descriptions (whose sample values
    may quote a removed source) leave Milvus and the embedding cache."""
    index = open_schema_index(milvus, embedder)
    recover_rewrite(index.client, index.name)
    key = database_key(warehouse_path)
    flt = f"database == {quote_literal(key)}"
    before = {r["doc_id"]: r["text"] for r in index.client.query(index.name, filter=flt, output_fields=["doc_id", "text"], limit=16384)}
    _, _, counts = index_database(index, warehouse_path)
    after = {r["doc_id"] for r in index.client.query(index.name, filter=flt, output_fields=["doc_id"], limit=16384)}
    stale = {text_hash(t) for d, t in before.items() if d not in after}
    counts["cache_entries_deleted"] = forget_everywhere(embedder.cache_root, stale)
    reclaim_deleted(index.client, index.name, _collection_factory(index.client, index.name))  # small; also after a retry
    return counts


@dg.op(pool=MILVUS_WRITE_POOL, description="Delete everything derived from the given sources: Milvus rows (made physical), cached vectors, "
       "runs that retrieved their text and those runs' files, stored partitions; rebuild the warehouse without them.")
def purge_sources(context: dg.OpExecutionContext, config: PurgeConfig, milvus: MilvusResource, embedder: EmbedderResource,
                  warehouse_db: WarehouseResource, sources: SourcesResource, io_manager: dg.ResourceParam[PolarsParquetIOManager]):
    removed = set(config.sources)
    footprint = read_footprint(io_manager, removed)
    client = milvus.client()
    deleted_rows = 0
    for name in chunk_collections(client):  # every model's and every variant's
        recover_rewrite(client, name)
        client.load_collection(name)
        n = sum(delete_source(client, name, source) for source in sorted(removed))
        deleted_rows += n
        if n or footprint.has_chunks:
            how = reclaim_deleted(client, name, _collection_factory(client, name))
            repaired = resync_remaining(client, name, embedder.model_id, io_manager, removed)
            context.log.info(f"deleted {n} rows of {sorted(removed)} from {name} ({how}; re-synced {repaired or 'none'})")
    cache_deleted = forget_everywhere(embedder.cache_root, footprint.text_hashes - hashes_kept_by_others(io_manager, removed))

    run_ids = (runs_citing(context.instance, removed) | set(answers_citing(removed, footprint.texts, footprint.ids))) - {context.run_id}
    files_deleted = delete_results(run_ids)
    runs_deleted = forget_runs(context.instance, run_ids)
    context.log.info(f"deleted {runs_deleted} runs that retrieved or returned their text, and {files_deleted} of their files")

    deleted_partitions = sum(io_manager.delete_stored(asset, names) for asset in PARQUET_ASSETS
                             for names in _partition_files(io_manager, asset) if names.source in removed)
    metadata = {"sources": sorted(removed), "deleted_rows": deleted_rows, "deleted_files": deleted_partitions,
                "cache_entries_deleted": cache_deleted, "runs_deleted": runs_deleted, "run_files_deleted": files_deleted}
    if warehouse_db.resolved_path.is_file():
        counts = build_from_platform(warehouse_db, io_manager, sources, context.instance)
        context.log_event(dg.AssetMaterialization("warehouse", description=f"rebuilt without {sorted(removed)}",
                                                  metadata={"tables": dg.MetadataValue.json(counts)}))
        if client.has_collection(schema_collection_name(embedder.model_id)):
            metadata["schema_index"] = dg.MetadataValue.json(resync_schema_index(milvus, embedder, warehouse_db.resolved_path))
    return dg.Output(None, metadata=metadata)


@dg.job(description="Remove sources that left sources.yaml and everything derived from their text.", tags=RETRY_TAGS)
def purge_job():
    purge_sources()
