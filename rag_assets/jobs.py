"""Every job of the code location, and the one list of ingestion assets.

- `ingest`: one source under one variant (`<source>|<variant>`), documents -> chunks -> embeddings -> index;
  the source sensor and the nightly schedule run it for the default variant.
- `experiment`: the same plus `evaluation`, for the runs `rag experiment run` launches per variant.
- `models`: `embedding_model` and `llm_model` of one variant.
- `experiment_report_job`: one experiment's comparison (the `experiment_report` asset).
- `ask`, `sql`, `purge`: op jobs defined next to their ops (inference/ and ingest/purge.py).
"""

import dagster as dg

from rag_assets.ingest.partitions import RETRY_TAGS, ingest_partitions, variants_partitions

INGEST_ASSETS = ("documents", "chunks", "embeddings", "index")  # in order; Parquet-backed: all but `index`
PARQUET_ASSETS = INGEST_ASSETS[:3]

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS),
    partitions_def=ingest_partitions,
    description="Ingest one source under one variant: documents -> chunks -> embeddings -> index.",
    tags=RETRY_TAGS,
)

experiment_job = dg.define_asset_job(
    "experiment",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS, "evaluation"),
    partitions_def=ingest_partitions,
    description="One variant of an experiment on one source: ingest with the variant's settings, then evaluate it.",
    tags=RETRY_TAGS,
)

models_job = dg.define_asset_job(
    "models",
    selection=dg.AssetSelection.assets("embedding_model", "llm_model"),
    partitions_def=variants_partitions,
    description="Record the models one variant uses (cards with weight hashes): their data versions feed its embeddings.",
)

report_job = dg.define_asset_job(
    "experiment_report_job",
    selection=dg.AssetSelection.assets("experiment_report"),
    description="Compare one experiment's variants (config: the experiment's name).",
)
