"""The source discovery sensor: sources.yaml -> dynamic partitions, and runs for what changed."""


import dagster as dg

from rag_assets.ingest.partitions import SOURCES_PARTITION
from rag_assets.ingest.purge import purge_job
from resources.sources import SourcesResource
from sensors.discovery import plan_discovery
from sensors.jobs import ingest_job


@dg.sensor(
    jobs=[ingest_job, purge_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reads sources.yaml: adds a partition per new source, removes (and purges) deleted ones, "
    "and requests an ingest run for each source whose spec or files changed.",
)
def sources_sensor(context: dg.SensorEvaluationContext, sources: SourcesResource) -> dg.SensorResult:
    try:
        specs = sources.specs()
    except Exception as exc:  # a broken sources.yaml must not drop every partition
        return dg.SkipReason(f"cannot read {sources.file}: {exc}")
    existing = context.instance.get_dynamic_partitions(SOURCES_PARTITION)
    plan = plan_discovery(specs, sources.base_dir, existing, context.cursor)
    requests: list[dg.DynamicPartitionsRequest] = []
    if plan.add:
        requests.append(dg.AddDynamicPartitionsRequest(SOURCES_PARTITION, plan.add))
    if plan.remove:
        requests.append(dg.DeleteDynamicPartitionsRequest(SOURCES_PARTITION, plan.remove))
    runs = [
        dg.RunRequest(job_name=ingest_job.name, partition_key=name, run_key=f"{name}:{fp}", tags={"rag/source": name, "rag/trigger": "sensor"})
        for name, fp in plan.ingest.items()
    ]
    if plan.remove:
        runs.append(
            dg.RunRequest(
                job_name=purge_job.name,
                run_key="purge:" + ",".join(plan.remove) + ":" + plan.cursor[-12:],
                run_config={"ops": {"purge_sources": {"config": {"sources": plan.remove}}}},
                tags={"rag/trigger": "sensor"},
            )
        )
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=requests, cursor=plan.cursor)
