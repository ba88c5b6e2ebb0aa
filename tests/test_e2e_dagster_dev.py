"""End to end with real parts: `dagster dev` (webserver, daemon, code server) + a `milvus-lite server`,
the sensor ingesting the demo source, then `rag ask` over GraphQL (one at a time and four at once) and
`rag sql` over GraphQL."""

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import httpx
import pytest

from loopback.openai_faults import OpenAIFaultServer
from rag_assets import client
from rag_assets.devserver import DevStack, free_port
from rag_assets.ingest.partitions import partition_tags
from rag_assets.run_worker import WORKER_TAG
from sql_platform import sql_responder

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RAG = Path(sys.executable).parent / "rag"


def is_demo_source(link: str) -> bool:
    return link.startswith((REPO / "docs").as_uri()) or link == (REPO / "README.md").as_uri()


def test_rag_ask_over_graphql_returns_an_answer_with_real_sources(stack: DevStack):
    proc = subprocess.run([str(RAG), "ask", "How do I add my own source?", "--url", stack.url, "--json",
                           "--rephrasings", "1", "--max-tokens", "48", "--timeout", "300"],
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert set(out) >= {"answer", "sources", "run_id", "timings"}
    assert isinstance(out["answer"], str) and out["sources"]
    assert all(is_demo_source(s["link"]) for s in out["sources"]), out["sources"]
    assert any("sources" in s["link"] or "README" in s["link"] for s in out["sources"])
    assert "[retrieve_original]" in proc.stderr  # progress from the run's events
    assert out["timings"]["total_s"] > 0 and out["llm"]["llm_calls"] == 2  # one rewrite call, one answer call
    assert f"[{len(out['sources']) + 1}]" not in out["answer"]  # stopped before inventing a source past the last


def test_the_answer_streams_over_graphql_before_the_run_ends(stack: DevStack):
    """The answer's pieces come from the run log as the model writes them; put together they are the answer, and
    the first arrives before the run has finished."""
    pieces: list[str] = []

    def on_answer(text: str, restart: bool) -> None:
        if restart:
            pieces.clear()
        else:
            pieces.append(text)

    out = client.ask("How are chunk ids computed?", url=stack.url, timeout_s=400, n_rephrasings=1, max_tokens=48,
                     on_answer=on_answer)
    assert len(pieces) >= 2 and "".join(pieces).strip() == out["answer"]
    timings = out["timings"]
    assert 0 < timings["first_token_s"] < timings["total_s"] and 0 < timings["answer_first_token_s"] < timings["answer_s"]
    proc = subprocess.run([str(RAG), "ask", "How are chunk ids computed?", "--url", stack.url, "--quiet", "--rephrasings", "0",
                           "--max-tokens", "24", "--timeout", "300"], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() and "[1]" in proc.stdout and "answer-delta" not in proc.stdout + proc.stderr


def event_types(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    records = instance.get_records_for_run(run_id, limit=1000).records
    return {r.event_log_entry.dagster_event.event_type_value for r in records if r.event_log_entry.dagster_event}


def test_asks_launch_at_once_while_ingest_runs_go_through_the_queue(stack: DevStack):
    """`DevRunCoordinator`: an ask holds no partition, so it is launched when submitted (no enqueued event, no
    wait for the daemon's next poll); the sensor's ingest runs were queued, as their partition limit needs."""
    out = client.ask("What does the index asset store?", url=stack.url, timeout_s=400, n_rephrasings=0, max_tokens=8)
    with dg.DagsterInstance.from_config(str(stack.dagster_home)) as instance:
        ask_events = event_types(instance, out["run_id"])
        ingest = instance.get_runs(dg.RunsFilter(job_name="ingest"), limit=1)
        assert ingest, "the sensor launched no ingest run"
        ingest_events = event_types(instance, ingest[0].run_id)
    assert "PIPELINE_STARTING" in ask_events and "PIPELINE_ENQUEUED" not in ask_events
    assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING"} <= ingest_events


def test_asks_execute_in_children_of_a_warm_run_worker(stack: DevStack):
    """`DevRunLauncher`: once the code location's warm worker is up (the first interactive run starts it), an ask
    executes in a child forked from it, not in a process spawned to import Dagster and the code; a cold start
    says why in the run's events."""
    runs = []
    with dg.DagsterInstance.from_config(str(stack.dagster_home)) as instance:
        for _ in range(4):  # the worker warms up in a few seconds: at most a few cold asks before it takes them
            out = client.ask("What does the index asset store?", url=stack.url, timeout_s=400, n_rephrasings=0, max_tokens=8)
            run = instance.get_run_by_id(out["run_id"])
            messages = [e.message for e in instance.all_logs(run.run_id)]
            runs.append((run, messages))
            if WORKER_TAG in run.tags:
                break
    run, messages = runs[-1]
    assert WORKER_TAG in run.tags, [m for _, ms in runs for m in ms if "new process" in m]
    pid = int(run.tags[WORKER_TAG])
    assert f"Started process for run (pid: {pid}), forked from a warm run worker." in messages
    assert run.status == dg.DagsterRunStatus.SUCCESS and out["sources"]
    for cold, cold_messages in runs[:-1]:
        assert any("Starting the run in a new process: " in m for m in cold_messages), cold_messages  # "[DevRunLauncher] ..."


def wait_for_background_runs(stack: DevStack, timeout_s: float = 300) -> None:
    """Until no run is queued or running on the stack (automation the ingestion set off, e.g. the SQL refresh)."""
    unfinished = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                  dg.DagsterRunStatus.STARTED]
    deadline = time.monotonic() + timeout_s
    with dg.DagsterInstance.from_config(str(stack.dagster_home)) as instance:
        while instance.get_runs(dg.RunsFilter(statuses=unfinished), limit=1):
            assert time.monotonic() < deadline, "background runs still going"
            time.sleep(1)


def test_runs_embed_on_the_model_server_and_fall_back_to_loading_without_it(stack: DevStack):
    """`rag dev` holds the embedding model in its server: an ask run embeds there (its request count rises).
    A run pointed at a server that is not there loads the model itself and still answers."""
    (server,) = [s for s in stack.servers if s.spec.name == "embedder"]
    wait_for_background_runs(stack)  # the schema index's refresh after an ingest embeds there too
    before = httpx.get(f"{server.url}/health").json()
    served = client.ask("What does the index asset store?", url=stack.url, timeout_s=400, n_rephrasings=1, max_tokens=16)
    wait_for_background_runs(stack)
    during = httpx.get(f"{server.url}/health").json()
    assert served["sources"] and during["requests"] > before["requests"]
    config = client.ask_run_config("What does the index asset store?", n_rephrasings=0, max_tokens=16)
    config["resources"] = {"embedder": {"config": {"server_url": f"http://127.0.0.1:{free_port()}"}}}
    fallback = client.Client(stack.url).run_and_wait(client.ASK_JOB.name, config, client.ASK_JOB.result_step, 400)
    assert fallback["sources"] and all(is_demo_source(s["link"]) for s in fallback["sources"])
    assert httpx.get(f"{server.url}/health").json()["requests"] == during["requests"]


def test_four_questions_at_once_each_get_their_own_answer(stack: DevStack):
    questions = ["What does the index asset store?", "How are chunk ids computed?",
                 "Why run a Milvus Lite server in development?", "What happens when a source is removed?"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda q: client.ask(q, url=stack.url, timeout_s=400, n_rephrasings=1, max_tokens=32), questions))
    assert [r["question"] for r in results] == questions
    assert len({r["run_id"] for r in results}) == 4
    for r in results:
        assert r["sources"] and all(is_demo_source(s["link"]) for s in r["sources"])
        assert (stack.home / "answers" / f"{r['run_id']}.json").exists()


def test_clear_errors_for_a_failed_run_a_timeout_and_no_webserver(stack: DevStack):
    with pytest.raises(client.RunFailed, match="answer_question: .*budget of 1 tokens is spent"):
        client.ask("How are chunk ids computed?", url=stack.url, timeout_s=300, llm_config={"budget_tokens": 1}, n_rephrasings=1)
    with pytest.raises(client.ClientError, match="RunConfigValidationInvalid"):
        client.ask("anything", url=stack.url, timeout_s=30, mode="no-such-mode")
    with pytest.raises(client.RunTimeout) as timeout:
        client.ask("How are chunk ids computed?", url=stack.url, timeout_s=0.5, n_rephrasings=0)
    assert timeout.value.run_id in str(timeout.value)
    later = client.result(timeout.value.run_id, url=stack.url, timeout_s=300)  # the run went on: its answer, by run id
    assert later["run_id"] == timeout.value.run_id and later["question"] == "How are chunk ids computed?" and later["sources"]
    with pytest.raises(client.ClientError, match="no run"):
        client.result("00000000-0000-0000-0000-000000000000", url=stack.url)
    with pytest.raises(client.ClientError, match="cannot reach the Dagster webserver"):
        client.ask("anything", url=f"http://127.0.0.1:{free_port()}", timeout_s=5)


def test_rag_sql_over_graphql_answers_from_the_demo_source_warehouse(stack: DevStack):
    """`rag sql` launched over GraphQL against the real stack: the run builds (or reuses) the warehouse from the
    ingested demo source and syncs its schema into the Milvus Lite server. The model is pinned per run with
    `--provider openai --base-url` to an OpenAI-shaped loopback server (the real `openai` SDK on the wire) that
    answers a known query, so the result can be checked row by row; then the bundled local model is asked too."""
    question = "List the title and link of every document that was read."
    answers = {question: "SELECT title, link FROM documents WHERE error IS NULL"}
    with OpenAIFaultServer(responder=sql_responder(lambda q: answers.get(q, "SELECT 1"))) as server:
        proc = subprocess.run([str(RAG), "sql", question, "--url", stack.url, "--json", "--provider", "openai", "--model", "loopback-sql",
                               "--base-url", server.base_url + "/v1", "--rephrasings", "1", "--timeout", "300"],
                              capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["error"] == "" and "documents" in out["tables"] and out["columns"] == ["title", "link"]
    demo = {p.as_uri() for p in (REPO / "docs").glob("*.md")} | {(REPO / "README.md").as_uri()}
    assert {link for _, link in out["rows"]} == demo  # every demo document, nothing else
    assert "[search_schema]" in stderr_steps(proc.stderr) and out["llm"]["llm_models"] == {"openai/loopback-sql": 2}
    assert (stack.home / "sql_answers" / f"{out['run_id']}.json").exists()
    again = subprocess.run([str(RAG), "result", out["run_id"], "--url", stack.url, "--json"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and json.loads(again.stdout)["rows"] == out["rows"]  # retrievable by run id

    local = client.sql("How many documents are there?", url=stack.url, timeout_s=400, n_rephrasings=1, max_tokens=64)
    assert local["sql"] and local["llm"]["llm_models"] == {"local/gemma-3-270m-q4_k_m": 2}
    if local["error"]:  # the 270M model often writes wrong SQL: it must then be refused or fail with a clear reason
        assert local["error_kind"] in ("rejected", "error", "timeout") and local["error"].startswith(("query rejected: ", "query failed: "))
    else:
        assert local["columns"] and isinstance(local["rows"], list)


def stderr_steps(stderr: str) -> set[str]:
    return {line.split("]")[0] + "]" for line in stderr.splitlines() if line.startswith("[")}


REFRESH_RUNS = ('{ runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "sql_refresh_sensor"}]}) '
                '{ ... on Runs { results { runId status assetSelection { path } } } } }')


def test_the_daemon_rebuilds_the_warehouse_after_the_ingest_run(stack: DevStack):
    """`sql_refresh_sensor` (running by default) is evaluated by the real daemon of `dagster dev`: after the
    sensor's ingest run it launches one run that materializes `warehouse` and `schema_index`."""
    deadline, runs = time.monotonic() + 300, []
    while time.monotonic() < deadline:
        runs = httpx.post(f"{stack.url}/graphql", json={"query": REFRESH_RUNS}, timeout=10).json()["data"]["runsOrError"]["results"]
        if any(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            break
        time.sleep(3)
    assert runs, "no run from sql_refresh_sensor within 300 s"
    done = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
    assert done[-1]["status"] == "SUCCESS", f"{done[-1]}; logs in {stack.home / 'logs'}"
    assert {tuple(a["path"]) for a in done[-1]["assetSelection"]} == {("warehouse",), ("schema_index",)}
    assert (stack.home / "warehouse.duckdb").is_file()


RETRIES = ('query Retries($root: String!) { runsOrError(filter: {tags: [{key: "dagster/root_run_id", value: $root}]}) '
           '{ ... on Runs { results { runId status tags { key value } } } } }')


DAEMONS = ('query R($id: ID!) { instance { daemonHealth { allDaemonStatuses { daemonType healthy required '
           'lastHeartbeatTime lastHeartbeatErrors { message } } } } runOrError(runId: $id) { ... on Run { status tags { key value } } } }')


def retry_diagnosis(url: str, run_id: str) -> dict:
    """What the daemon and the failed run looked like when no retry came: each daemon's health and heartbeat, the
    run's tags (`dagster/will_retry`, `dagster/failure_reason`)."""
    data = httpx.post(f"{url}/graphql", json={"query": DAEMONS, "variables": {"id": run_id}}, timeout=30).json()["data"]
    daemons = {d["daemonType"]: {k: d[k] for k in ("healthy", "lastHeartbeatTime", "lastHeartbeatErrors")}
               for d in data["instance"]["daemonHealth"]["allDaemonStatuses"] if d["required"]}
    run = data["runOrError"]
    return {"now": time.time(), "daemons": daemons, "run": {"status": run.get("status"), "tags": {t["key"]: t["value"] for t in run.get("tags", [])}}}


def test_a_failed_ingest_run_is_retried_from_the_failure_by_the_daemon(stack: DevStack):
    """`rag dev` turns run retries on; ingest runs ask for two. A run made to fail in its `chunks` step (a chunk
    size too small to hold any text) is re-executed twice by the real daemon, each time from the failed step."""
    api = client.Client(stack.url)
    run_id = api.launch("ingest", {"ops": {"chunks": {"config": {"max_tokens": 16}}}}, tags=partition_tags("rag-assets-docs"))
    with pytest.raises(client.RunFailed, match="leaves no room for text"):
        api.wait(run_id, timeout_s=300)
    deadline, retries = time.monotonic() + 400, []
    while time.monotonic() < deadline:
        runs = httpx.post(f"{stack.url}/graphql", json={"query": RETRIES, "variables": {"root": run_id}}, timeout=10).json()
        retries = runs["data"]["runsOrError"]["results"]
        if len(retries) == 2 and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in retries):
            break
        time.sleep(3)
    assert [r["status"] for r in retries] == ["FAILURE", "FAILURE"], (retries, retry_diagnosis(stack.url, run_id))
    tags = [{t["key"]: t["value"] for t in r["tags"]} for r in retries]
    assert sorted(t["dagster/retry_number"] for t in tags) == ["1", "2"]
    assert all(t["dagster/partition"] == "rag-assets-docs|default" for t in tags)
