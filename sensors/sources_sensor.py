"""The source discovery sensor: sources.yaml -> dynamic partitions, and runs for what changed or was missed."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import dagster as dg

from rag_assets.hashing import sha256_hex
from rag_assets.ingest.partitions import SOURCE_DIM, SOURCES_PARTITION, VARIANTS_PARTITION, partition_key
from rag_assets.variants import DEFAULT_VARIANT
from rag_assets.ingest.purge import purge_job
from rag_assets.sources.spec import SourcesFileError
from resources.sources import SourcesResource
from sensors.discovery import Cursor, DiscoveryPlan, RunSummary, missed_sources, plan_discovery, removal_problem
from rag_assets.jobs import ingest_job, models_job

RUNS_OVERLAP_S = 10.0  # runs updated this long before the last check are looked at again (clock and commit slack)
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING,
]


def _ingest_runs_since(instance: dg.DagsterInstance, since: float | None) -> list[RunSummary]:
    """The ingest runs updated since `since`: one query per tick, however many sources there are."""
    after = datetime.fromtimestamp(since, tz=timezone.utc) if since is not None else None
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=ingest_job.name, updated_after=after))
    out = []
    for record in records:
        run = record.dagster_run
        source = run.tags.get("rag/source") or run.tags.get(f"dagster/partition/{SOURCE_DIM}")
        if source:
            out.append(RunSummary(source, run.status.value, record.create_timestamp.timestamp(), dict(run.tags)))
    return out


def _unfinished(instance: dg.DagsterInstance, job_name: str, names: list[str]) -> set[str]:
    """Which of `names` an unfinished run of `job_name` is for: one query, made only when `names` is not empty."""
    if not names:
        return set()
    found: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=IN_PROGRESS)):
        if job_name == purge_job.name:
            found.update(run.run_config.get("ops", {}).get("purge_sources", {}).get("config", {}).get("sources", []))
        else:
            found.add(run.tags.get("rag/source") or run.tags.get(f"dagster/partition/{SOURCE_DIM}") or "")
    return found & set(names)


def _ingest_request(name: str, key: str, trigger: str) -> dg.RunRequest:
    return dg.RunRequest(job_name=ingest_job.name, partition_key=partition_key(name), run_key=key, tags={"rag/source": name, "rag/trigger": trigger})


def _purge_requests(plan: DiscoveryPlan) -> list[dg.RunRequest]:
    """One purge run per removed source, tagged with it (`rag/source`): the run queue then never runs it alongside
    the sensor's ingest run (or another purge) of that source."""
    return [
        dg.RunRequest(
            job_name=purge_job.name,
            # a source removed again after coming back: a new key
            run_key=f"purge:{sha256_hex(f'{name}.{plan.cursor.generations.get(name, 0)}', length=24)}",
            run_config={"ops": {"purge_sources": {"config": {"sources": [name]}}}},
            tags={"rag/trigger": "sensor", "rag/source": name},
        )
        for name in plan.remove
    ]


@dg.sensor(
    jobs=[ingest_job, purge_job, models_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reads sources.yaml: adds a partition per new source, removes (and purges) deleted ones, requests an "
    "ingest run for each source whose spec or files changed, and again for one whose last run failed for good. "
    "Skips, removing nothing, when the file is missing, unreadable, empty, or drops more than half of the sources "
    "without `confirm_removal`.",
)
def sources_sensor(context: dg.SensorEvaluationContext, sources: SourcesResource) -> dg.SensorResult | dg.SkipReason:
    try:
        content = sources.read()
    except SourcesFileError as exc:  # a broken sources.yaml must not read as "every source was removed"
        return dg.SkipReason(f"cannot use the sources file: {exc}")
    specs = content.specs()
    instance = context.instance
    existing = instance.get_dynamic_partitions(SOURCES_PARTITION)
    problem = removal_problem(sources.file, set(specs), set(existing), set(content.confirm_removal))
    if problem:
        return dg.SkipReason(problem)

    checked_at = time.time()
    busy = _unfinished(instance, ingest_job.name, sorted(set(existing) - set(specs)))  # purged after their run ends
    if busy:
        context.log.info(f"removing {', '.join(sorted(busy))} once their unfinished ingest runs end")
    plan = plan_discovery(specs, sources.base_dir, existing, Cursor.parse(context.cursor), busy)
    plan.defer(_unfinished(instance, purge_job.name, plan.returning))  # a source back while its purge still runs
    runs = [_ingest_request(name, key, "sensor") for name, key in plan.ingest.items()]
    since = plan.cursor.runs_checked
    missed = missed_sources(
        _ingest_runs_since(instance, since - RUNS_OVERLAP_S if since is not None else None), plan,
        instance.run_retries_enabled, instance.run_retries_max_retries,
    )
    runs += [_ingest_request(name, key, "missed") for name, key in missed.items()]
    plan.cursor.runs_checked = checked_at
    if missed:
        context.log.info(f"requesting again the sources whose last ingest run failed for good: {', '.join(missed)}")

    requests: list[dg.DynamicPartitionsRequest] = []
    if plan.add and not instance.has_dynamic_partition(VARIANTS_PARTITION, DEFAULT_VARIANT):
        # The default variant, and a run recording its model cards (upstream of its embeddings and index).
        requests.append(dg.AddDynamicPartitionsRequest(VARIANTS_PARTITION, [DEFAULT_VARIANT]))
        runs.append(dg.RunRequest(job_name=models_job.name, partition_key=DEFAULT_VARIANT, run_key=f"models:{DEFAULT_VARIANT}",
                                  tags={"rag/trigger": "sensor"}))
    if plan.add:
        requests.append(dg.AddDynamicPartitionsRequest(SOURCES_PARTITION, plan.add))
    if plan.remove:
        requests.append(dg.DeleteDynamicPartitionsRequest(SOURCES_PARTITION, plan.remove))
        runs += _purge_requests(plan)
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=requests, cursor=plan.cursor.dump())
