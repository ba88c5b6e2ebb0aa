"""Concurrency and faults on the real daemon: `dagster dev` (webserver, daemon, code server) + `milvus-lite server`
with the dagster.yaml `rag dev` writes (run queue limited per `dagster/partition` and `rag/source`, run monitoring, run retries).

The dagster.yaml itself (written, upgraded, or left alone) is checked without a stack. The daemon tests share
one stack for the module, three sources ingested by the sensor first: `alpha` and `beta` (small) and `bulk`
(600 notes, written to Milvus 5 rows per call so that an `index` step lasts long enough to be interrupted).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from rag_assets import client
from rag_assets.devserver import DAGSTER_YAML, PREVIOUS_DAGSTER_YAMLS, DevStack, ensure_dagster_yaml, free_port
from rag_assets.index_store import chunk_collections, count_for_source, ids_for_source, source_filter
from rag_assets.ingest.partitions import partition_tags
from resources.milvus import milvus_client

REPO = Path(__file__).resolve().parents[1]
N_BULK = 600
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
RUNS = """query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId jobName status creationTime startTime endTime tags { key value } } } } }"""


def write_notes(folder: Path, n: int, topic: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"note-{i:04d}.md").write_text(f"# {topic} note {i}\n\nMeeting note number {i} about {topic} item {i % 17}.\n")
    return folder


def runs(url: str, **filter_) -> list[dict]:
    """Run records (newest first) matching a GraphQL RunsFilter; tags as a dict."""
    data = httpx.post(f"{url}/graphql", json={"query": RUNS, "variables": {"filter": filter_}}, timeout=30).json()
    results = data["data"]["runsOrError"]["results"]
    for r in results:
        r["tags"] = {t["key"]: t["value"] for t in r["tags"]}
    return results


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f}s")


def milvus(stack: DevStack) -> tuple[MilvusClient, str]:
    """A client of the stack's Milvus (retried: a restarted server takes a moment) and the loaded chunks collection."""
    def connect():
        try:
            c = milvus_client(stack.milvus_uri)
            name = chunk_collections(c)[0]
            c.load_collection(name)
            return c, name
        except MilvusException:
            return None
    return wait_for(connect, 60, "Milvus answering")


def retries_of(url: str, root: str) -> list[dict]:
    return [r for r in runs(url, tags=[{"key": "dagster/root_run_id", "value": root}]) if r["runId"] != root]


def delete_rows_and_ingest_again(stack: DevStack, source: str) -> str:
    """Empty `source` in Milvus, launch an ingest run of it, and wait until its `index` step has written some rows."""
    c, name = milvus(stack)
    c.delete(name, filter=source_filter([source]))
    c.flush(name)
    assert count_for_source(c, name, source) == 0
    run_id = client.Client(stack.url).launch("ingest", {}, tags={**partition_tags(source), "rag/source": source})
    wait_for(lambda: 0 < count_for_source(c, name, source) < N_BULK, 300, "the index step writing", poll_s=0.05)
    return run_id


def test_rag_dev_writes_or_upgrades_its_dagster_yaml_and_leaves_the_users_alone(tmp_path: Path):
    path = tmp_path / "dagster.yaml"
    assert ensure_dagster_yaml(path) is None and path.read_text() == DAGSTER_YAML
    for old in PREVIOUS_DAGSTER_YAMLS:  # what earlier versions of `rag dev` wrote: upgraded in place
        path.write_text(old)
        assert ensure_dagster_yaml(path) is None and path.read_text() == DAGSTER_YAML
    mine = PREVIOUS_DAGSTER_YAMLS[-1] + "python_logs:\n  python_log_level: INFO\n"
    path.write_text(mine)
    warning = ensure_dagster_yaml(path)
    assert path.read_text() == mine
    assert warning and str(path) in warning and "applyLimitPerUniqueValue" in warning and "run_monitoring" in warning

    path.write_text(DAGSTER_YAML)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:  # the file loads, with the settings it says
        concurrency = instance.get_concurrency_config()  # what the run queue daemon reads
        queue = concurrency.run_queue_config
        assert [(lim["key"], lim["limit"]) for lim in queue.tag_concurrency_limits] == [("dagster/partition", 1), ("rag/source", 1)]
        assert queue.max_concurrent_runs == -1  # inference runs are never held back by a global cap
        pools = concurrency.pool_config  # the index steps and the purge take turns, nothing else waits
        assert pools.default_pool_limit == 1 and pools.pool_granularity.value == "op"
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 5
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_monitoring_enabled and instance.run_retries_enabled


@dataclass(frozen=True)
class Safety:
    stack: DevStack
    bulk_ids: set[str]  # what the sensor's undisturbed ingestion of `bulk` stored
    bulk_count: int


@pytest.fixture(scope="module")
def safety(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("safety_home")
    sources = home / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [
        {"name": name, "kind": "markdown", "paths": [str(write_notes(home / "data" / name, n, name))]}
        for name, n in (("alpha", 3), ("beta", 3), ("bulk", N_BULK))
    ]}))
    dev = DevStack(home, free_port(), free_port(), sources, REPO / "workspace.yaml", log_dir=home / "logs",
                   env={"RAG_MILVUS_WRITE_BATCH": "5"})
    try:
        dev.start(timeout_s=240)
        def all_ingested() -> bool:
            done = {r["tags"].get("rag/source") for r in runs(dev.url, pipelineName="ingest", statuses=["SUCCESS"])}
            return {"alpha", "beta", "bulk"} <= done
        wait_for(all_ingested, 900, f"the sensor's ingest runs (logs in {home / 'logs'})", poll_s=3)
        c, name = milvus(dev)
        yield Safety(dev, ids_for_source(c, name, "bulk"), count_for_source(c, name, "bulk"))
    finally:
        dev.stop()


def source_tags(job: str, source: str) -> dict[str, str]:
    """Tags as the sensor gives its runs: the source (`rag/source`), and the partition for an ingest run."""
    return {"rag/source": source, **(partition_tags(source) if job == "ingest" else {})}


@pytest.mark.slow
def test_runs_of_one_partition_queue_and_runs_of_others_do_not(safety: Safety):
    """Launched at once: two ingest runs of `alpha`, an ingest and a purge run of `beta` (the purge tagged with the
    source it deletes, as the sensor tags it). Runs of one partition never overlap (one waits QUEUED while the other
    runs); runs of the two partitions run alongside each other."""
    url = safety.stack.url
    api = client.Client(url)
    purge_beta = {"ops": {"purge_sources": {"config": {"sources": ["beta"]}}}}
    launches = [("ingest", {}, "alpha"), ("ingest", {}, "alpha"), ("ingest", {}, "beta"), ("purge_job", purge_beta, "beta")]
    with ThreadPoolExecutor(max_workers=len(launches)) as pool:
        ids = list(pool.map(lambda launch: api.launch(launch[0], launch[1], tags=source_tags(launch[0], launch[2])), launches))
    groups = {"alpha": ids[:2], "beta": ids[2:]}

    seen_queued: dict[str, set[str]] = {"alpha": set(), "beta": set()}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = {r["runId"]: r["status"] for r in runs(url, runIds=ids)}
        for partition, group in groups.items():
            active = [i for i in group if status[i] in ("STARTING", "STARTED")]
            assert len(active) <= 1, f"two runs of {partition} in progress at once: {status}"
            if active:
                seen_queued[partition].update(i for i in group if status[i] == "QUEUED")
        if all(s in FINISHED for s in status.values()):
            break
        time.sleep(0.5)
    records = {r["runId"]: r for r in runs(url, runIds=ids)}
    assert all(records[i]["status"] == "SUCCESS" for i in ids), {i: records[i]["status"] for i in ids}

    spans = {p: sorted((records[i]["startTime"], records[i]["endTime"]) for i in group) for p, group in groups.items()}
    for partition, (first, second) in spans.items():
        assert second[0] >= first[1], (partition, spans)  # one after the other
        assert len(seen_queued[partition]) == 1, (partition, seen_queued)  # the second waited in the queue
    assert any(a[0] < b[1] and b[0] < a[1] for a in spans["alpha"] for b in spans["beta"]), spans  # partitions overlap
    waited = {p: round(second[0] - first[1], 1) for p, (first, second) in spans.items()}
    print(f"run spans {spans}; second run of each partition started {waited} s after the first ended")


@pytest.mark.slow
def test_milvus_killed_during_index_then_run_retry_restores_the_same_rows(safety: Safety):
    """SIGKILL the Milvus Lite server while `index` writes; the step fails, the server restarts on the same data
    folder and port, and Dagster's run retry re-runs `index`: the same ids and count as the undisturbed ingestion."""
    stack = safety.stack
    root = delete_rows_and_ingest_again(stack, "bulk")
    killed = time.monotonic()
    stack.kill_milvus()
    wait_for(lambda: runs(stack.url, runIds=[root])[0]["status"] in FINISHED, 300, "the interrupted run ending")
    assert runs(stack.url, runIds=[root])[0]["status"] == "FAILURE"
    failed_s = time.monotonic() - killed
    stack.start_milvus()
    retry = wait_for(lambda: next((r for r in retries_of(stack.url, root) if r["status"] == "SUCCESS"), None), 400,
                     "a successful retry")
    recovered_s = time.monotonic() - killed
    c, name = milvus(stack)
    assert ids_for_source(c, name, "bulk") == safety.bulk_ids
    assert count_for_source(c, name, "bulk") == safety.bulk_count == len(safety.bulk_ids) == N_BULK  # no duplicates
    assert retry["tags"]["dagster/retry_strategy"] == "FROM_FAILURE"
    print(f"milvus killed: run FAILURE after {failed_s:.1f}s, retry SUCCESS {recovered_s:.1f}s after the kill")


@pytest.mark.slow
def test_dagster_dev_killed_mid_run_fails_the_run_and_the_retry_ingests(safety: Safety):
    """SIGKILL `dagster dev` (daemon, code server and run worker) while `index` writes, start it again on the same
    DAGSTER_HOME: run monitoring ends the run FAILURE (it does not stay STARTED), its run retry completes the source."""
    stack = safety.stack
    root = delete_rows_and_ingest_again(stack, "bulk")
    killed = time.monotonic()
    stack.kill_dagster()
    stack.start_dagster(timeout_s=240)
    ready_s = time.monotonic() - killed
    wait_for(lambda: runs(stack.url, runIds=[root])[0]["status"] in FINISHED, 300, "the orphaned run ending")
    failed_s = time.monotonic() - killed
    assert runs(stack.url, runIds=[root])[0]["status"] == "FAILURE"
    wait_for(lambda: any(r["status"] == "SUCCESS" for r in retries_of(stack.url, root)), 400, "a successful retry")
    recovered_s = time.monotonic() - killed
    c, name = milvus(stack)
    assert ids_for_source(c, name, "bulk") == safety.bulk_ids
    assert count_for_source(c, name, "bulk") == safety.bulk_count == N_BULK
    print(f"dagster dev killed: ready again after {ready_s:.1f}s, run FAILURE {failed_s:.1f}s, retry SUCCESS {recovered_s:.1f}s")
