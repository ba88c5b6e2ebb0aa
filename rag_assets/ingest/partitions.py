"""The dynamic partitions: one key per declared source."""

import dagster as dg

SOURCES_PARTITION = "sources"
sources_partitions = dg.DynamicPartitionsDefinition(name=SOURCES_PARTITION)

# Ingestion and purge runs are idempotent, so a failed one (Milvus restarting, a site timing out) is
# re-executed from the failed step by Dagster's run retries, twice at most. Needs `run_retries:
# enabled: true` in the instance's dagster.yaml (`rag dev` writes it).
RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}
