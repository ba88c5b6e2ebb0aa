"""One tick of the real `sources_sensor` against a real instance, with its partition requests applied as the daemon would."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from resources.sources import SourcesResource
from sensors.sources_sensor import sources_sensor


def apply_partition_requests(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def sensor_tick(instance: dg.DagsterInstance, sources_file: Path, cursor: str | None) -> tuple[dg.SensorResult | dg.SkipReason, str | None]:
    """The tick's result and the cursor the context holds after it; partition requests applied."""
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"sources": SourcesResource(path=str(sources_file))}) as context:
        result = sources_sensor(context)
        cursor_after = context.cursor
    if not isinstance(result, dg.SkipReason):
        apply_partition_requests(instance, result)
    return result, cursor_after
