"""`index`: the source's chunks in Milvus (dense HNSW + BM25), synced by content-hash ids."""


import time

import dagster as dg
import numpy as np
import polars as pl

from rag_assets.index_store import count_for_source, ensure_collection, index_parameters, sync_source
from rag_assets.ingest.k8s import placement
from rag_assets.ingest.partitions import MILVUS_WRITE_POOL, MODEL_OF_VARIANT, IngestPartition, ingest_partitions
from rag_assets.ingest.variant_embedder import embedder_for
from rag_assets.ingest.versions import CODE_VERSIONS, frame_version
from resources.embedder import EmbedderResource
from resources.milvus import MilvusResource

COUNT_MATCHES = "count_matches_chunks"


@dg.asset(
    partitions_def=ingest_partitions,
    code_version=CODE_VERSIONS["index"],
    deps=[MODEL_OF_VARIANT],  # the collection is named for the model and holds its vectors
    group_name="ingestion",
    op_tags=placement("cpu"),
    pool=MILVUS_WRITE_POOL,
    kinds={"milvus"},
    description="The source's chunks in the Milvus collection named for the embedding model and the variant's ingestion settings: dense vectors "
    "(HNSW, cosine) and a BM25 sparse field from Milvus's BM25 function. New chunks are upserted, gone ones deleted.",
    check_specs=[dg.AssetCheckSpec(COUNT_MATCHES, asset="index", description="Rows in Milvus for the source equal its chunks.")],
)
def index(
    context: dg.AssetExecutionContext,
    milvus: MilvusResource,
    embedder: EmbedderResource,
    chunks: pl.DataFrame,
    embeddings: pl.DataFrame,
):
    part = IngestPartition.of(context.partition_key)
    source, embedder = part.source, embedder_for(embedder, part.variant, part.names)
    started = time.perf_counter()
    if chunks["chunk_id"].to_list() != embeddings["chunk_id"].to_list():
        raise ValueError("embeddings are stale for these chunks: materialize embeddings again")
    vectors = embeddings["vector"].to_numpy().astype(np.float32) if embeddings.height else np.zeros((0, embedder.dimension), np.float32)
    client = milvus.client()
    name = part.names.collection(embedder.model_id)
    ensure_collection(client, name, embedder.dimension)
    result = sync_source(client, name, source, chunks, vectors)
    stored = count_for_source(client, name, source)
    return dg.MaterializeResult(
        data_version=frame_version(chunks, ["chunk_id"], name),
        metadata={
            "variant": part.variant.name,
            "variant_settings": dg.MetadataValue.json(part.variant.settings()),
            "embedding_model": embedder.model_id,
            "collection": name,
            "milvus_uri": milvus.resolved_uri if "://" in milvus.resolved_uri else "milvus-lite file",
            "inserted": result.inserted,
            "deleted": result.deleted,
            "unchanged": result.unchanged,
            "rows_for_source": stored,
            "index_parameters": dg.MetadataValue.json(index_parameters(embedder.dimension)),
            "sync_seconds": round(time.perf_counter() - started, 3),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=COUNT_MATCHES, passed=stored == chunks.height, metadata={"stored": stored, "chunks": chunks.height}
            )
        ],
    )
