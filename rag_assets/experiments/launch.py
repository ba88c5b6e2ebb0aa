"""Run an experiment on the platform over GraphQL: check its sources, register its variants, build and evaluate each one.

Per variant (at most `concurrency` at once): the `models` run for the variant, then one `experiment` run per
source (documents -> ... -> index -> evaluation of partition `<source>|<variant>`), each awaited. A variant
that fails is recorded and the others go on. Last, the `experiment_report` run compares what was evaluated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rag_assets.client import LOCATION, REPOSITORY, Client, ClientError
from rag_assets.experiments.spec import ExperimentFile
from rag_assets.ingest.partitions import VARIANTS_PARTITION, partition_tags
from rag_assets.variants import register

# The report's job cannot be named `experiment_report` like its asset: an asset job's graph and the asset's op
# would share one name, which Dagster refuses when it loads the repository.
MODELS_JOB, EXPERIMENT_JOB, REPORT_JOB, REPORT_ASSET = "models", "experiment", "experiment_report_job", "experiment_report"
RUN_TIMEOUT_S = 3600.0

ADD_PARTITION = """
mutation AddPartition($selector: RepositorySelector!, $name: String!, $key: String!) {
  addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
    __typename
    ... on AddDynamicPartitionSuccess { partitionKey }
    ... on DuplicateDynamicPartitionError { message }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}"""


@dataclass
class VariantOutcome:
    variant: str
    status: str = "pending"  # "succeeded" | "failed"
    run_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""


@dataclass
class ExperimentOutcome:
    experiment: str
    variants: list[VariantOutcome]
    report_run_id: str = ""
    report_error: str = ""
    registered: list[str] = field(default_factory=list)  # variant names new to the registry

    @property
    def failed(self) -> list[str]:
        return [v.variant for v in self.variants if v.status != "succeeded"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.report_error


def add_variant_partitions(client: Client, names: list[str]) -> None:
    """Add each name to the `variants` dynamic partitions (one already there is fine)."""
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    for name in names:
        result = client._graphql(ADD_PARTITION, {"selector": selector, "name": VARIANTS_PARTITION, "key": name})["addDynamicPartition"]
        if result["__typename"] not in ("AddDynamicPartitionSuccess", "DuplicateDynamicPartitionError"):
            raise ClientError(f"adding variant partition {name!r} failed ({result['__typename']}): {result.get('message', '')}")


def platform_sources(client: Client) -> set[str]:
    """The `sources` dimension of the ingestion partitions (read by dimension: the `<source>|<variant>` keys would
    be empty while no variant exists yet)."""
    return set(client.sources())


def check_sources(client: Client, sources: list[str]) -> None:
    """Each source of the experiment is a partition on the platform (declared in its sources.yaml)."""
    known = platform_sources(client)
    missing = [s for s in sources if s not in known]
    if missing:
        raise ClientError(f"unknown source {', '.join(map(repr, missing))} (the platform at {client.url} knows: "
                          f"{', '.join(sorted(known)) or 'none'}): declare it in the platform's sources.yaml, or fix the experiment's sources")


def evaluation_config(exp: ExperimentFile) -> dict:
    """Run config of an `experiment` run: the labeled set, if the experiment names one."""
    if exp.labels is None:
        return {}
    return {"ops": {"evaluation": {"config": {"labels": exp.labels, "split": exp.split}}}}


def _timed_run(client: Client, job: str, run_config: dict, tags: dict[str, str], what: str, outcome: VariantOutcome,
               timeout_s: float, say: Callable[[str], None]) -> None:
    started = time.perf_counter()
    run_id = client.launch(job, run_config, tags)
    outcome.run_ids.append(run_id)
    say(f"[{outcome.variant}] started run {run_id} ({what})")
    client.wait(run_id, timeout_s)
    say(f"[{outcome.variant}] {what} succeeded in {time.perf_counter() - started:.1f} s")


def run_variant(exp: ExperimentFile, variant: str, client: Client, timeout_s: float, say: Callable[[str], None]) -> VariantOutcome:
    """The `models` run, then one `experiment` run per source; a failure ends the variant, recorded, never raised."""
    outcome, started = VariantOutcome(variant), time.perf_counter()
    tags = {"experiment": exp.name, "variant": variant}
    try:
        _timed_run(client, MODELS_JOB, {}, {**tags, "dagster/partition": variant}, "models", outcome, timeout_s, say)
        for source in exp.sources:
            _timed_run(client, EXPERIMENT_JOB, evaluation_config(exp), {**tags, **partition_tags(source, variant)},
                       f"experiment {source}", outcome, timeout_s, say)
        outcome.status = "succeeded"
    except ClientError as exc:
        outcome.status, outcome.error = "failed", " ".join(str(exc).split())
        say(f"[{variant}] FAILED: {outcome.error}")
    outcome.seconds = round(time.perf_counter() - started, 1)
    if outcome.status == "succeeded":
        say(f"[{variant}] succeeded in {outcome.seconds:.1f} s")
    return outcome


def run_experiment(exp: ExperimentFile, client: Client, concurrency: int | None = None,
                   on_progress: Callable[[str], None] | None = None, timeout_s: float = RUN_TIMEOUT_S) -> ExperimentOutcome:
    """Check the sources, register the variants, add their partitions, run every variant, then the report.

    Raises `VariantError` (a name registered with other settings) or `ClientError` (the platform refused,
    a source is unknown) before anything is launched; a variant's failure is in the outcome instead."""
    say = on_progress or (lambda message: None)
    check_sources(client, exp.sources)  # read-only: an unreachable platform or an unknown source changes nothing
    registered = register(list(exp.variants))  # VariantError: nothing launched
    names = [v.name for v in exp.variants]
    add_variant_partitions(client, names)
    with ThreadPoolExecutor(max_workers=min(concurrency or exp.concurrency, len(names)), thread_name_prefix="variant") as pool:
        outcomes = list(pool.map(lambda name: run_variant(exp, name, client, timeout_s, say), names))
    result = ExperimentOutcome(exp.name, outcomes, registered=registered)
    if len(result.failed) == len(names):
        result.report_error = "no variant succeeded: nothing to compare"
        return result
    config = {"ops": {REPORT_ASSET: {"config": {"experiment": exp.name}}}}
    try:
        result.report_run_id = client.launch(REPORT_JOB, config, {"experiment": exp.name})
        say(f"[report] started run {result.report_run_id} ({REPORT_JOB})")
        client.wait(result.report_run_id, timeout_s)
        say("[report] succeeded")
    except ClientError as exc:
        result.report_error = " ".join(str(exc).split())
        say(f"[report] FAILED: {result.report_error}")
    return result

