"""The ingestion assets' partitions: dynamic `sources` x dynamic `variants`, keys `<source>|<variant>`."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from rag_assets.storage import StorageNames, names_for
from rag_assets.variants import DEFAULT_VARIANT, VariantSettings, get_variant

SOURCES_PARTITION = "sources"
VARIANTS_PARTITION = "variants"
SOURCE_DIM, VARIANT_DIM = "source", "variant"
sources_partitions = dg.DynamicPartitionsDefinition(name=SOURCES_PARTITION)
variants_partitions = dg.DynamicPartitionsDefinition(name=VARIANTS_PARTITION)
ingest_partitions = dg.MultiPartitionsDefinition({SOURCE_DIM: sources_partitions, VARIANT_DIM: variants_partitions})

# `embeddings` and `index` of `<source>|<variant>` depend on `embedding_model` of `<variant>`: a changed model
# (a new weights hash) marks them stale.
MODEL_OF_VARIANT = dg.AssetDep("embedding_model", partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=VARIANT_DIM))

# Ingestion and purge runs are idempotent, so a failed one (Milvus restarting, a site timing out) is
# re-executed from the failed step by Dagster's run retries, twice at most. Needs `run_retries:
# enabled: true` in the instance's dagster.yaml (`rag dev` writes it).
RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}

# Writers of the chunks collections: the `index` steps and the purge. On Milvus Lite a purge rewrites a whole
# collection, so these steps take turns (`rag dev` limits every pool to one slot, at op granularity: only
# these steps wait, not the runs around them). Without a pool limit in the instance they run freely.
MILVUS_WRITE_POOL = "milvus_index"


def partition_key(source: str, variant: str = DEFAULT_VARIANT) -> dg.MultiPartitionKey:
    """The ingestion partition of one source under one variant (`<source>|<variant>` as a string)."""
    return dg.MultiPartitionKey({SOURCE_DIM: source, VARIANT_DIM: variant})


def split_key(key: str) -> tuple[str, str]:
    """(source, variant) of an ingestion partition key, given as a MultiPartitionKey or its string."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims[SOURCE_DIM], dims[VARIANT_DIM]
    source, sep, variant = str(key).partition("|")
    if not sep or not source or not variant:
        raise ValueError(f"not an ingestion partition key (<source>|<variant>): {key!r}")
    return source, variant


def partition_tags(source: str, variant: str = DEFAULT_VARIANT) -> dict[str, str]:
    """The tags Dagster gives a run of that partition (for runs launched over GraphQL)."""
    return {"dagster/partition": str(partition_key(source, variant)),
            f"dagster/partition/{SOURCE_DIM}": source, f"dagster/partition/{VARIANT_DIM}": variant}


@dataclass(frozen=True)
class IngestPartition:
    """What a step of one ingestion partition works on: the source, its variant's settings, its storage names."""

    source: str
    variant: VariantSettings
    names: StorageNames

    @classmethod
    def of(cls, key: str) -> "IngestPartition":
        source, variant_name = split_key(key)
        variant = get_variant(variant_name)
        return cls(source, variant, names_for(source, variant))
