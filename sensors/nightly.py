"""Nightly re-ingestion of every scheduled source; unchanged content costs no embedding."""

import dagster as dg

from rag_assets.ingest.partitions import SOURCES_PARTITION, partition_key
from rag_assets.sources.spec import SourcesFileError
from resources.sources import SourcesResource
from rag_assets.jobs import ingest_job


@dg.schedule(
    cron_schedule="0 3 * * *",
    job=ingest_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Re-ingests every source with `schedule: nightly` (its default variant) at 03:00 UTC.",
)
def nightly_reingest(context: dg.ScheduleEvaluationContext, sources: SourcesResource) -> list[dg.RunRequest] | dg.SkipReason:
    try:
        specs = sources.specs()
    except SourcesFileError as exc:  # the same one-line reason as the sensor's, shown on the tick
        return dg.SkipReason(f"cannot use the sources file: {exc}")
    partitions = set(context.instance.get_dynamic_partitions(SOURCES_PARTITION))
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(partition_key=partition_key(name), run_key=f"nightly:{name}:{day}", tags={"rag/source": name, "rag/trigger": "nightly"})
        for name, spec in sorted(specs.items())
        if spec.schedule == "nightly" and name in partitions
    ]
