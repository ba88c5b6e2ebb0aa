"""The dynamic partitions: one key per declared source."""

import dagster as dg

SOURCES_PARTITION = "sources"
sources_partitions = dg.DynamicPartitionsDefinition(name=SOURCES_PARTITION)

# Ingestion and purge runs are idempotent, so a failed one (Milvus restarting, a site timing out) is
# re-executed from the failed step by Dagster's run retries, twice at most. Needs `run_retries:
# enabled: true` in the instance's dagster.yaml (`rag dev` writes it).
RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}

# Writers of the chunks collections: the `index` steps and the purge. On Milvus Lite a purge rewrites a whole
# collection, so these steps take turns (`rag dev` limits every pool to one slot, at op granularity: only
# these steps wait, not the runs around them). Without a pool limit in the instance they run freely.
MILVUS_WRITE_POOL = "milvus_index"
