"""The dynamic partitions: one key per declared source."""

import dagster as dg

SOURCES_PARTITION = "sources"
sources_partitions = dg.DynamicPartitionsDefinition(name=SOURCES_PARTITION)
