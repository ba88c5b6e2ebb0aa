"""The SQL assistant's assets: `warehouse` (a DuckDB file of the platform's data) and `schema_index`
(its tables and columns described in Milvus)."""

import time

import dagster as dg

from rag_assets.inference.sql.assistant import index_database
from rag_assets.inference.sql.resource import WarehouseResource
from rag_assets.inference.sql.schema_index import SchemaIndex, schema_collection_name
from rag_assets.io_manager import PolarsParquetIOManager
from resources import EmbedderResource, MilvusResource, SourcesResource

ALL_SOURCES = dg.AllPartitionMapping()
# `eager()` without its "no missing dependency" clause: one source whose ingestion failed must not
# freeze the warehouse for every other source. It still waits for ingestion runs in progress.
REFRESH_AFTER_INGEST = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("after ingestion")


def open_schema_index(milvus: MilvusResource, embedder: EmbedderResource) -> SchemaIndex:
    """The schema collection for the embedder's model (created on first use)."""
    index = SchemaIndex(milvus.client(), schema_collection_name(embedder.model_id), embedder.dimension,
                        lambda texts: embedder.embed_documents(texts)[0], embedder.embed_queries)
    index.ensure()
    return index


def build_from_platform(warehouse_db: WarehouseResource, io_manager: PolarsParquetIOManager, sources: SourcesResource,
                        instance: dg.DagsterInstance) -> dict[str, int]:
    assets_dir = io_manager.root()
    return warehouse_db.build(assets_dir, list(sources.specs().values()), instance)


@dg.asset(
    group_name="sql",
    kinds={"duckdb"},
    automation_condition=REFRESH_AFTER_INGEST,
    deps=[dg.AssetDep("documents", partition_mapping=ALL_SOURCES), dg.AssetDep("chunks", partition_mapping=ALL_SOURCES)],
    description="A DuckDB database of the platform's own data: sources, documents, chunks, Dagster runs and "
    "retrieval evaluation results, every table and column commented. Rebuilt whole, atomically.",
)
def warehouse(context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, sources: SourcesResource,
              io_manager: dg.ResourceParam[PolarsParquetIOManager]) -> dg.MaterializeResult:
    started = time.perf_counter()
    counts = build_from_platform(warehouse_db, io_manager, sources, context.instance)
    path = warehouse_db.resolved_path
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "tables": dg.MetadataValue.json(counts),
        **{f"rows_{name}": n for name, n in counts.items()},
        "size_bytes": path.stat().st_size,
        "build_seconds": round(time.perf_counter() - started, 3),
    })


@dg.asset(
    group_name="sql",
    kinds={"milvus"},
    automation_condition=REFRESH_AFTER_INGEST,
    deps=[warehouse],
    description="The warehouse's tables and columns (names, types, descriptions, sample values) embedded in the "
    "Milvus collection `schema__<embedding model>`; synced by content hash, so a rebuild is idempotent.",
)
def schema_index(context: dg.AssetExecutionContext, warehouse_db: WarehouseResource, milvus: MilvusResource,
                 embedder: EmbedderResource) -> dg.MaterializeResult:
    started = time.perf_counter()
    index = open_schema_index(milvus, embedder)
    key, tables, counts = index_database(index, warehouse_db.resolved_path)
    return dg.MaterializeResult(metadata={
        "collection": index.name,
        "database": dg.MetadataValue.path(str(warehouse_db.resolved_path)),
        "database_key": key,
        "tables": dg.MetadataValue.json({t.name: len(t.columns) for t in tables}),
        "documents": index.count(key),
        **counts,
        "sync_seconds": round(time.perf_counter() - started, 3),
    })
