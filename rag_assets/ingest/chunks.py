"""`chunks`: token-aware, Markdown-aware chunks sized by the embedding model's tokenizer."""


import time

import dagster as dg
import polars as pl

from rag_assets.chunking import Chunker, ChunkSettings
from rag_assets.variants import VariantSettings
from rag_assets.ingest.k8s import placement
from rag_assets.ingest.partitions import IngestPartition, ingest_partitions
from rag_assets.ingest.variant_embedder import embedder_for
from rag_assets.ingest.versions import CODE_VERSIONS, frame_version
from rag_assets.io_manager import PolarsParquetIOManager
from resources.embedder import EmbedderResource

NO_EMPTY_CHUNKS = "no_empty_chunks"
WITHIN_TOKEN_LIMIT = "within_token_limit"


class ChunksConfig(dg.Config):
    """Ad-hoc overrides of the variant's chunking (recorded in metadata); unset = the variant's settings."""

    max_tokens: int | None = None
    overlap: int | None = None

    def settings(self, variant: VariantSettings) -> ChunkSettings:
        return ChunkSettings(self.max_tokens or variant.chunk_max_tokens, variant.chunk_overlap if self.overlap is None else self.overlap)


def chunk_documents(
    documents: pl.DataFrame, embedder: EmbedderResource, settings: ChunkSettings, previous: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, Chunker]:
    chunker = Chunker(embedder.tokenizer(), settings, embedder.max_tokens)
    return chunker.chunk_frame(documents, previous), chunker


@dg.asset(
    partitions_def=ingest_partitions,
    code_version=CODE_VERSIONS["chunks"],
    group_name="ingestion",
    op_tags=placement("cpu"),
    kinds={"python", "parquet"},
    description="Chunks of one source's documents: at most `max_tokens` model tokens each (special tokens "
    "included), split on Markdown structure, titled, with heading path and position. Ids are content hashes.",
    check_specs=[
        dg.AssetCheckSpec(NO_EMPTY_CHUNKS, asset="chunks", description="No chunk is empty or whitespace."),
        dg.AssetCheckSpec(WITHIN_TOKEN_LIMIT, asset="chunks", description="No chunk exceeds the token limit."),
    ],
)
def chunks(
    context: dg.AssetExecutionContext,
    config: ChunksConfig,
    embedder: EmbedderResource,
    io_manager: dg.ResourceParam[PolarsParquetIOManager],
    documents: pl.DataFrame,
):
    started = time.perf_counter()
    part = IngestPartition.of(context.partition_key)
    settings = config.settings(part.variant)
    previous = io_manager.load_previous(context.asset_key, context.partition_key)
    frame, chunker = chunk_documents(documents, embedder_for(embedder, part.variant, part.names), settings, previous)
    reused = 0 if previous is None else frame.join(previous.select("chunk_id"), on="chunk_id", how="semi").height
    empty = frame.filter(pl.col("text").str.strip_chars() == "").height
    over = frame.filter(pl.col("n_tokens") > chunker.limit)
    overrides = {k: v for k, v in config.model_dump().items() if v is not None}
    yield dg.Output(
        frame,
        data_version=frame_version(frame, ["chunk_id"], chunker.settings.settings_id),
        metadata={
            "variant": part.variant.name,
            "overrides": dg.MetadataValue.json(overrides),
            "chunks": frame.height,
            "reused_unchanged": reused,
            "documents": frame["doc_id"].n_unique(),
            "chunker": chunker.settings.settings_id,
            "token_limit": chunker.limit,
            "tokens_mean": round(float(frame["n_tokens"].mean() or 0), 1),
            "tokens_max": int(frame["n_tokens"].max() or 0),
            "chunk_seconds": round(time.perf_counter() - started, 3),
        },
    )
    yield dg.AssetCheckResult(check_name=NO_EMPTY_CHUNKS, passed=empty == 0, metadata={"empty": empty})
    yield dg.AssetCheckResult(
        check_name=WITHIN_TOKEN_LIMIT,
        passed=over.height == 0,
        metadata={"over_limit": over.height, "limit": chunker.limit, "max_tokens": int(frame["n_tokens"].max() or 0)},
    )
