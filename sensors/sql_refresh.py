"""Rebuild the SQL assistant's `warehouse` and `schema_index` after ingestion runs update their inputs."""

import dagster as dg

sql_refresh_sensor = dg.AutomationConditionSensorDefinition(
    "sql_refresh_sensor",
    target=dg.AssetSelection.groups("sql"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the `sql` group's automation conditions: the warehouse and its schema index are rebuilt "
    "once the ingestion runs that updated documents or chunks have finished.",
)
