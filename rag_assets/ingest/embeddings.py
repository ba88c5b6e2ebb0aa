"""`embeddings`: one vector per chunk, through the embedder's (model, text hash) cache."""


import time

import dagster as dg
import numpy as np
import polars as pl

from rag_assets.ingest.k8s import placement
from rag_assets.ingest.partitions import MODEL_OF_VARIANT, IngestPartition, ingest_partitions
from rag_assets.ingest.variant_embedder import embedder_for
from rag_assets.ingest.versions import CODE_VERSIONS, frame_version
from resources.embedder import EmbedderResource

DIMENSION_MATCHES = "dimension_matches_model"


def embedding_frame(chunks: pl.DataFrame, vectors: np.ndarray) -> pl.DataFrame:
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    return pl.DataFrame(
        {
            "chunk_id": chunks["chunk_id"],
            "text_hash": chunks["text_hash"],
            "vector": pl.Series("vector", vectors, dtype=pl.Array(pl.Float32, dim)),
        }
    )


@dg.asset(
    partitions_def=ingest_partitions,
    code_version=CODE_VERSIONS["embeddings"],
    deps=[MODEL_OF_VARIANT],
    group_name="ingestion",
    kinds={"pytorch", "parquet"},
    op_tags=placement("embedding"),
    description="A normalised vector per chunk from the configured embedding model (default local "
    "all-MiniLM-L6-v2). Unchanged chunks come from the cache keyed by (model, text hash): never embedded twice.",
    check_specs=[dg.AssetCheckSpec(DIMENSION_MATCHES, asset="embeddings", description="Vector dimension equals the model's.")],
)
def embeddings(context: dg.AssetExecutionContext, embedder: EmbedderResource, chunks: pl.DataFrame):
    started = time.perf_counter()
    part = IngestPartition.of(context.partition_key)
    embedder = embedder_for(embedder, part.variant, part.names)
    sensitive = bool(chunks["sensitive"].any()) if chunks.height else False
    vectors, embedded_now = embedder.embed_documents(
        chunks["text"].to_list(), chunks["text_hash"].to_list(), log=context.log, sensitive=sensitive
    )
    elapsed = time.perf_counter() - started
    frame = embedding_frame(chunks, vectors)
    dim = int(vectors.shape[1]) if vectors.size else embedder.dimension
    yield dg.Output(
        frame,
        data_version=frame_version(frame, ["chunk_id"], embedder.model_id),
        metadata={
            "variant": part.variant.name,
            "model": embedder.model_id,
            "dimension": dim,
            "vectors": frame.height,
            "embedded_now": embedded_now,
            "cache_hits": frame.height - embedded_now,
            "embed_seconds": round(elapsed, 3),
            "chunks_per_second": round(embedded_now / elapsed, 1) if embedded_now and elapsed else 0.0,
        },
    )
    yield dg.AssetCheckResult(
        check_name=DIMENSION_MATCHES, passed=dim == embedder.dimension, metadata={"dimension": dim, "model_dimension": embedder.dimension}
    )
