"""The purge job: a source removed from sources.yaml leaves no vectors and no stored files."""


import dagster as dg

from rag_assets.index_store import chunk_collections, delete_source
from rag_assets.ingest.partitions import RETRY_TAGS
from rag_assets.io_manager import PolarsParquetIOManager
from resources.milvus import MilvusResource

PARTITIONED_ASSETS = ("documents", "chunks", "embeddings")


class PurgeConfig(dg.Config):
    sources: list[str]


@dg.op(description="Delete every Milvus row and stored Parquet file of the given sources.")
def purge_sources(context: dg.OpExecutionContext, config: PurgeConfig, milvus: MilvusResource, io_manager: dg.ResourceParam[PolarsParquetIOManager]):
    client = milvus.client()
    deleted_rows, deleted_files = 0, 0
    for source in config.sources:
        for name in chunk_collections(client):
            client.load_collection(name)
            n = delete_source(client, name, source)
            deleted_rows += n
            context.log.info(f"deleted {n} rows of source {source!r} from {name}")
        for asset in PARTITIONED_ASSETS:
            deleted_files += io_manager.delete_partition(dg.AssetKey(asset), source)
    return dg.Output(None, metadata={"sources": config.sources, "deleted_rows": deleted_rows, "deleted_files": deleted_files})


@dg.job(description="Remove sources that left sources.yaml: their vectors and stored partitions.", tags=RETRY_TAGS)
def purge_job():
    purge_sources()
