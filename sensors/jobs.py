"""The ingestion job, shared by the sensor and the schedule."""

import dagster as dg

from rag_assets.ingest.partitions import RETRY_TAGS, sources_partitions

INGEST_ASSETS = ["documents", "chunks", "embeddings", "index"]

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS),
    partitions_def=sources_partitions,
    description="Ingest one source: documents -> chunks -> embeddings -> index.",
    tags=RETRY_TAGS,
)
