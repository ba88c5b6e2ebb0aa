"""A synchronous client: launch an inference run over Dagster's GraphQL API, wait, return its answer.

`ask("question")` launches `ask_job` on the webserver at `url`, streams the run's progress to
`on_progress` and the answer's text, as the model writes it, to `on_answer` (from the run's log:
`inference.answer_stream`), and returns the answer with its sources and the time to its first piece. Errors say what happened: the webserver is
unreachable, the run failed (with the failing step's error), or the wait timed out (with the run id).
`ask_local` / `sql_local` check their cheap preconditions (Milvus answers, the index exists, the
sources and files named exist, RAG_HOME is writable) before any model loads.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from rag_assets.inference.answer_stream import parse_delta

AnswerCallback = Callable[[str, bool], None]  # (text piece, restart): restart says the pieces so far are void

DEFAULT_URL = "http://127.0.0.1:3000"
LOCATION, REPOSITORY = "rag_assets", "__repository__"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass(frozen=True)
class InferenceJob:
    name: str  # the Dagster job
    first_op: str  # takes the question and the options as its config
    result_step: str  # its output metadata holds the result


ASK_JOB = InferenceJob("ask_job", "retrieve_original", "answer_question")
SQL_JOB = InferenceJob("sql_job", "reword", "answer")
RESULT_STEPS = {job.name: job.result_step for job in (ASK_JOB, SQL_JOB)}

INDEXED_SOURCES = ('query Sources { assetNodeOrError(assetKey: {path: ["index"]}) '
                   '{ __typename ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }')
RUN = "query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { jobName status } } }"

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
    ... on RunConflict { message }
    ... on UnauthorizedError { message }
    ... on PresetNotFoundError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
  }
}"""

EVENTS = """
query Events($runId: ID!, $cursor: String) {
  runOrError(runId: $runId) { __typename ... on Run { status } }
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message stepKey timestamp }
        ... on ExecutionStepFailureEvent { error { message cause { message cause { message } } } }
        ... on ExecutionStepOutputEvent { outputName metadataEntries { label ... on JsonMetadataEntry { jsonString } } }
      }
    }
  }
}"""


def root_cause(error: dict) -> str:
    """The innermost message of a Dagster error chain (the user code's own exception)."""
    while error.get("cause"):
        error = error["cause"]
    return (error.get("message") or "").strip()


class ClientError(Exception):
    """A failure the user can fix (a request to the platform, a missing file, a stopped server): the message says what is wrong and what to do."""


class RunFailed(ClientError):
    def __init__(self, run_id: str, status: str, step_errors: list[str], url: str = ""):
        self.run_id, self.status, self.step_errors = run_id, status, step_errors
        detail = "; ".join(step_errors) or "no step error was reported"
        where = f"; its logs: {url}/runs/{run_id}" if url else ""
        super().__init__(f"run {run_id} ended {status}: {detail}{where}")


class RunTimeout(ClientError):
    def __init__(self, run_id: str, timeout_s: float, url: str):
        self.run_id = run_id
        super().__init__(f"run {run_id} still running after {timeout_s:.0f}s: get its answer later with "
                         f"`rag result {run_id} --wait 600`, or follow it at {url}/runs/{run_id}")


class Client:
    def __init__(self, url: str = DEFAULT_URL, request_timeout_s: float = 30.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=request_timeout_s)
        self.first_answer_at: float | None = None  # set by `wait`

    def _graphql(self, query: str, variables: dict) -> dict:
        try:
            resp = self._http.post(f"{self.url}/graphql", json={"query": query, "variables": variables})
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the Dagster webserver at {self.url} ({exc.__class__.__name__}): "
                              "start it with `rag dev` (or `make dev`), or pass --url") from exc
        if resp.status_code != 200:
            raise ClientError(f"{self.url}/graphql answered HTTP {resp.status_code}: {resp.text[:300]}")
        body = resp.json()
        if body.get("errors"):
            raise ClientError(f"GraphQL error: {body['errors'][0].get('message')}")
        return body["data"]

    def launch(self, job: str, run_config: dict, tags: dict[str, str] | None = None) -> str:
        params = {
            "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        result = self._graphql(LAUNCH, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            messages = [e["message"] for e in result.get("errors", [])] or [result.get("message", "")]
            raise ClientError(f"launching {job} failed ({result['__typename']}): {'; '.join(messages)}")
        return result["run"]["runId"]

    def wait(self, run_id: str, timeout_s: float, on_progress: Callable[[str], None] | None = None, poll_s: float = 0.25,
             on_answer: AnswerCallback | None = None, answer_step: str = "") -> dict[str, dict]:
        """Wait for the run to finish; returns the JSON output metadata by step. Raises on failure or timeout.

        The answer deltas `answer_step` logs go to `on_answer` in order (not to `on_progress`); `self.first_answer_at`
        is the `time.perf_counter()` when the first one arrived (None if none did)."""
        deadline = time.monotonic() + timeout_s
        cursor, errors, outputs = None, [], {}
        self.first_answer_at, next_seq = None, 0
        while True:
            data = self._graphql(EVENTS, {"runId": run_id, "cursor": cursor})
            run = data["runOrError"]
            if run["__typename"] != "Run":
                raise ClientError(f"run {run_id} not found")
            logs = data["logsForRun"]
            more = logs.get("hasMore", False)  # more than one page of events since the cursor: read on before returning
            if logs["__typename"] == "EventConnection":
                cursor = logs["cursor"]
                for event in logs["events"]:
                    kind = event["__typename"]
                    if kind == "ExecutionStepFailureEvent":
                        errors.append(f"{event.get('stepKey')}: {root_cause(event.get('error') or {})}")
                    if kind == "ExecutionStepOutputEvent":
                        for entry in event.get("metadataEntries", []):
                            if "jsonString" in entry:
                                outputs.setdefault(event["stepKey"], {})[entry["label"]] = entry["jsonString"]
                    delta = parse_delta(event.get("message", "")) if kind == "LogMessageEvent" else None
                    if delta is not None and event.get("stepKey") == answer_step:
                        if delta.seq >= next_seq:  # in order; a repeat is skipped
                            next_seq = delta.seq + 1
                            if self.first_answer_at is None and delta.text:
                                self.first_answer_at = time.perf_counter()
                            if on_answer:
                                on_answer(delta.text, delta.restart)
                        continue
                    if on_progress and kind in ("ExecutionStepStartEvent", "ExecutionStepSuccessEvent", "ExecutionStepFailureEvent",
                                                "RunStartEvent", "RunSuccessEvent", "RunFailureEvent", "LogMessageEvent"):
                        on_progress(f"[{event.get('stepKey') or 'run'}] {event.get('message', '')}")
            if more:
                continue
            if run["status"] in FINISHED:
                if run["status"] != "SUCCESS":
                    raise RunFailed(run_id, run["status"], errors, self.url)
                return outputs
            if time.monotonic() > deadline:
                raise RunTimeout(run_id, timeout_s, self.url)
            time.sleep(poll_s)

    def run_and_wait(self, job: str, run_config: dict, result_step: str, timeout_s: float, tags: dict[str, str] | None = None,
                     on_progress: Callable[[str], None] | None = None, on_answer: AnswerCallback | None = None) -> dict:
        started = time.perf_counter()
        run_id = self.launch(job, run_config, tags)
        launched = time.perf_counter()
        result = self._finished_result(run_id, self.wait(run_id, timeout_s, on_progress, on_answer=on_answer, answer_step=result_step),
                                       result_step)
        timings = result.setdefault("timings", {})
        timings.update(launch_s=round(launched - started, 3), total_s=round(time.perf_counter() - started, 3))
        if self.first_answer_at is not None:
            timings["first_token_s"] = round(self.first_answer_at - started, 3)  # what the user waits before the answer begins
        return result

    def result(self, run_id: str, timeout_s: float = 0.0, on_progress: Callable[[str], None] | None = None) -> dict:
        """The result of an earlier `ask_job` or `sql_job` run, by run id (waiting up to `timeout_s` if it still runs)."""
        run = self._graphql(RUN, {"runId": run_id})["runOrError"]
        if run["__typename"] != "Run":
            raise ClientError(f"no run {run_id} on {self.url}: check the run id (`rag ask` and `rag sql` print it), or pass --url")
        if run["jobName"] not in RESULT_STEPS:
            raise ClientError(f"run {run_id} is a {run['jobName']} run, not a question ({', '.join(RESULT_STEPS)})")
        return self._finished_result(run_id, self.wait(run_id, timeout_s, on_progress), RESULT_STEPS[run["jobName"]])

    def sources(self) -> list[str]:
        """The sources the platform has registered (the `index` asset's dynamic partitions)."""
        node = self._graphql(INDEXED_SOURCES, {})["assetNodeOrError"]
        if node["__typename"] != "AssetNode":
            return []
        return sorted(key for dim in node["partitionKeysByDimension"] if dim["name"] == "source" for key in dim["partitionKeys"])  # partitions.SOURCE_DIM

    def _finished_result(self, run_id: str, outputs: dict[str, dict], result_step: str) -> dict:
        """The result of a run that succeeded; if the events read while it ran lack it, its whole event log is read
        once more before giving up (one of twenty asks at once came back without it, issue 12, session 5)."""
        if result_step not in outputs or "result" not in outputs[result_step]:
            first_answer_at = self.first_answer_at
            outputs = self.wait(run_id, 0.0)
            self.first_answer_at = first_answer_at
        return self._result(run_id, outputs, result_step)

    @staticmethod
    def _result(run_id: str, outputs: dict[str, dict], result_step: str) -> dict:
        if result_step not in outputs or "result" not in outputs[result_step]:
            raise ClientError(f"run {run_id} succeeded but step {result_step!r} reported no result")
        return {**json.loads(outputs[result_step]["result"]), "run_id": run_id}


def job_run_config(first_op: str, question: str, provider: str | None = None, model: str | None = None,
                   llm_config: dict | None = None, **options) -> dict:
    """Run config for an inference job: the question and options on its first op, LLM overrides on `llm`."""
    config = {"ops": {first_op: {"config": {"question": question, **{k: v for k, v in options.items() if v is not None}}}}}
    llm = {**(llm_config or {}), **{k: v for k, v in (("provider", provider), ("model", model)) if v}}
    if llm:
        config["resources"] = {"llm": {"config": llm}}
    return config


# --- preconditions, checked before a model loads -----------------------------------------------------------------

def check_writable(folder: Path, fix: str) -> None:
    """Raise `ClientError` unless `folder` exists (or can be made) and a file can be written in it; `fix` says what to do."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ClientError(f"cannot write to {folder} ({exc.strerror or exc.__class__.__name__}): {fix}") from exc


def check_milvus(uri: str, timeout_s: float = 3.0) -> None:
    """Raise `ClientError` unless the Milvus server at `uri` accepts a connection within `timeout_s` (a Lite file needs none)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https", "tcp", "grpc"):
        return
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or 19530), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClientError(f"cannot reach Milvus at {uri} ({exc.strerror or exc.__class__.__name__}): "
                          "start it with `rag dev`, or set RAG_MILVUS_URI to a running server") from exc


def sources_file_problem(path: Path, exc: Exception) -> str:
    """One line for a missing, unreadable or invalid sources file: what is wrong, and what to do."""
    if not path.exists():
        return f"no sources file at {path}: create it, or point RAG_SOURCES (or --sources) at yours"
    return f"{' '.join(str(exc).split())}; fix the file and retry (`rag sources list` checks it)"


def read_sources(path: Path) -> dict:
    """The sources declared in `path` by name; `ClientError` with one line if it is missing or malformed."""
    from rag_assets.sources.spec import SourcesFileError, load_sources

    try:
        return load_sources(path)
    except (SourcesFileError, OSError) as exc:
        raise ClientError(sources_file_problem(path, exc)) from exc


def _declared(path: Path) -> str:
    try:
        names = sorted(read_sources(path))
    except ClientError:
        return f"{path} cannot be read"
    return f"declared in {path}: {', '.join(names) or 'none'}"


def check_index(resources: dict, sources: list[str] | None) -> None:
    """A local `ask`: Milvus answers, the chunk collection exists, each requested source has chunks in it."""
    from rag_assets.index_store import source_filter
    from rag_assets.storage import collection_name
    from rag_assets.retrieval import IndexMissing, require_collection
    from rag_assets.settings import rag_home
    from rag_assets.sources.spec import sources_file_path

    check_writable(rag_home(), "set RAG_HOME to a writable folder")
    uri = resources["milvus"].resolved_uri
    check_milvus(uri)
    if "://" not in uri and not Path(uri).exists():
        raise ClientError(f"no index yet: no Milvus Lite file at {uri} (nothing ingested); declare a source in sources.yaml and "
                          "let `rag dev` ingest it (and set RAG_MILVUS_URI to the server it prints), then ask again")
    name, client = collection_name(resources["embedder"].model_id), resources["milvus"].client()
    try:
        require_collection(client, name)
    except IndexMissing as exc:
        raise ClientError(str(exc)) from exc
    if sources:
        client.load_collection(name)
        for source in sources:
            if not client.query(name, filter=source_filter([source]), output_fields=["chunk_id"], limit=1):
                raise ClientError(f"unknown source {source!r}: nothing from it is in the index ({_declared(sources_file_path())}); "
                                  "check the name with `rag sources list`, or wait for its ingestion")


def check_platform_sources(client: Client, sources: list[str] | None) -> None:
    """A remote `ask`: the platform has sources, and knows each one asked for (one GraphQL query, before a run loads models)."""
    known = client.sources()
    if not known:
        raise ClientError(f"no index yet: the platform at {client.url} has no sources; declare one in its sources.yaml "
                          "and let its sensor ingest it, then ask again")
    for source in sources or []:
        if source not in known:
            raise ClientError(f"unknown source {source!r} (the platform at {client.url} knows: {', '.join(sorted(known))}): "
                              "check the name with `rag sources list`")


def check_sql(resources: dict, database: str | None) -> None:
    """A local `sql`: RAG_HOME is writable, Milvus answers (schema index), and the database, or what builds the warehouse, exists."""
    from rag_assets.settings import rag_home

    check_writable(rag_home(), "set RAG_HOME to a writable folder")
    check_milvus(resources["milvus"].resolved_uri)
    if database:
        if not Path(database).is_file():
            raise ClientError(f"no DuckDB database at {Path(database).resolve()}: check --database")
    elif not (warehouse := resources["warehouse_db"].resolved_path).is_file():
        sources = resources["sources"].file  # the run builds the warehouse from the declared sources
        if not sources.is_file():
            raise ClientError(f"no warehouse at {warehouse} yet, and no sources file at {sources} to build it from: "
                              "point RAG_SOURCES at your sources file, or pass --database")
        read_sources(sources)


def run_local(job, result_step: str, run_config: dict, check: Callable[[dict], None] | None = None) -> dict:
    """Run an inference job in this process (no webserver): ephemeral instance, in-memory IO.

    `check(resources)` runs first: the job's cheap preconditions, before any model loads."""
    import dagster as dg

    import definitions

    started = time.perf_counter()
    resources = {**definitions.default_resources(), "inference_io": dg.mem_io_manager}
    if check is not None:
        check(resources)
    result = job.execute_in_process(run_config=run_config, resources=resources, instance=dg.DagsterInstance.ephemeral())
    out = result.output_for_node(result_step)
    out["run_id"] = result.run_id
    out["timings"]["total_s"] = round(time.perf_counter() - started, 3)
    return out


def _launch(job: InferenceJob, question: str, url: str, timeout_s: float, on_progress: Callable[[str], None] | None,
            config: dict, on_answer: AnswerCallback | None = None) -> dict:
    return Client(url).run_and_wait(job.name, config, job.result_step, timeout_s, tags={"rag/question": question[:200]},
                                    on_progress=on_progress, on_answer=on_answer)


def ask_run_config(question: str, provider: str | None = None, model: str | None = None, llm_config: dict | None = None, **options) -> dict:
    return job_run_config(ASK_JOB.first_op, question, provider, model, llm_config, **options)


def ask(question: str, url: str = DEFAULT_URL, provider: str | None = None, model: str | None = None, timeout_s: float = 600,
        on_progress: Callable[[str], None] | None = None, llm_config: dict | None = None, on_answer: AnswerCallback | None = None,
        **options) -> dict:
    """Ask over GraphQL and wait: returns {question, answer, sources, rephrasings, timings, llm, run_id}; the answer's
    pieces go to `on_answer` as the model writes them, and `timings.first_token_s` says when the first arrived."""
    check_platform_sources(Client(url), options.get("sources"))
    return _launch(ASK_JOB, question, url, timeout_s, on_progress, ask_run_config(question, provider, model, llm_config, **options),
                   on_answer)


def ask_local(question: str, provider: str | None = None, model: str | None = None, llm_config: dict | None = None, **options) -> dict:
    """The same job in this process (no webserver)."""
    from rag_assets.inference.ask_job import ask_job

    return run_local(ask_job, ASK_JOB.result_step, ask_run_config(question, provider, model, llm_config, **options),
                     check=lambda resources: check_index(resources, options.get("sources")))


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sql_run_config(question: str, provider: str | None = None, model: str | None = None, llm_config: dict | None = None, **options) -> dict:
    return job_run_config(SQL_JOB.first_op, question, provider, model, llm_config, **options)


def sql(question: str, url: str = DEFAULT_URL, provider: str | None = None, model: str | None = None, timeout_s: float = 600,
        on_progress: Callable[[str], None] | None = None, llm_config: dict | None = None, **options) -> dict:
    """Ask the SQL assistant over GraphQL and wait: returns {question, answer, sql, columns, rows, error, timings, llm, run_id, ...}."""
    return _launch(SQL_JOB, question, url, timeout_s, on_progress, sql_run_config(question, provider, model, llm_config, **options))


def sql_local(question: str, provider: str | None = None, model: str | None = None, llm_config: dict | None = None, **options) -> dict:
    """The SQL job in this process (no webserver)."""
    from rag_assets.inference.sql.job import sql_job

    return run_local(sql_job, SQL_JOB.result_step, sql_run_config(question, provider, model, llm_config, **options),
                     check=lambda resources: check_sql(resources, options.get("database")))


def result(run_id: str, url: str = DEFAULT_URL, timeout_s: float = 0.0) -> dict:
    """The answer of an earlier `ask` or `sql` run by its run id (e.g. after a `RunTimeout`)."""
    return Client(url).result(run_id, timeout_s)
