"""A synchronous client: launch an inference run over Dagster's GraphQL API, wait, return its answer.

`ask("question")` launches `ask_job` on the webserver at `url`, streams the run's progress to
`on_progress`, and returns the answer with its sources. Errors say what happened: the webserver is
unreachable, the run failed (with the failing step's error), or the wait timed out (with the run id).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

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
    """A failed request to the platform, with what to do about it in the message."""


class RunFailed(ClientError):
    def __init__(self, run_id: str, status: str, step_errors: list[str]):
        self.run_id, self.status, self.step_errors = run_id, status, step_errors
        detail = "; ".join(step_errors) or "no step error was reported"
        super().__init__(f"run {run_id} ended {status}: {detail}")


class RunTimeout(ClientError):
    def __init__(self, run_id: str, timeout_s: float, url: str):
        self.run_id = run_id
        super().__init__(f"run {run_id} still running after {timeout_s:.0f}s; look it up at {url}/runs/{run_id}")


class Client:
    def __init__(self, url: str = DEFAULT_URL, request_timeout_s: float = 30.0):
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=request_timeout_s)

    def _graphql(self, query: str, variables: dict) -> dict:
        try:
            resp = self._http.post(f"{self.url}/graphql", json={"query": query, "variables": variables})
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the Dagster webserver at {self.url} ({exc.__class__.__name__}); is `make dev` running?") from exc
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

    def wait(self, run_id: str, timeout_s: float, on_progress: Callable[[str], None] | None = None, poll_s: float = 0.25) -> dict[str, dict]:
        """Wait for the run to finish; returns the JSON output metadata by step. Raises on failure or timeout."""
        deadline = time.monotonic() + timeout_s
        cursor, errors, outputs = None, [], {}
        while True:
            data = self._graphql(EVENTS, {"runId": run_id, "cursor": cursor})
            run = data["runOrError"]
            if run["__typename"] != "Run":
                raise ClientError(f"run {run_id} not found")
            logs = data["logsForRun"]
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
                    if on_progress and kind in ("ExecutionStepStartEvent", "ExecutionStepSuccessEvent", "ExecutionStepFailureEvent",
                                                "RunStartEvent", "RunSuccessEvent", "RunFailureEvent", "LogMessageEvent"):
                        on_progress(f"[{event.get('stepKey') or 'run'}] {event.get('message', '')}")
            if run["status"] in FINISHED:
                if run["status"] != "SUCCESS":
                    raise RunFailed(run_id, run["status"], errors)
                return outputs
            if time.monotonic() > deadline:
                raise RunTimeout(run_id, timeout_s, self.url)
            time.sleep(poll_s)

    def run_and_wait(self, job: str, run_config: dict, result_step: str, timeout_s: float, tags: dict[str, str] | None = None,
                     on_progress: Callable[[str], None] | None = None) -> dict:
        started = time.perf_counter()
        run_id = self.launch(job, run_config, tags)
        launched = time.perf_counter()
        result = self._result(run_id, self.wait(run_id, timeout_s, on_progress), result_step)
        result.setdefault("timings", {}).update(launch_s=round(launched - started, 3), total_s=round(time.perf_counter() - started, 3))
        return result

    def result(self, run_id: str, timeout_s: float = 0.0, on_progress: Callable[[str], None] | None = None) -> dict:
        """The result of an earlier `ask_job` or `sql_job` run, by run id (waiting up to `timeout_s` if it still runs)."""
        run = self._graphql(RUN, {"runId": run_id})["runOrError"]
        if run["__typename"] != "Run":
            raise ClientError(f"no run {run_id} on {self.url}")
        if run["jobName"] not in RESULT_STEPS:
            raise ClientError(f"run {run_id} is a {run['jobName']} run, not a question ({', '.join(RESULT_STEPS)})")
        return self._result(run_id, self.wait(run_id, timeout_s, on_progress), RESULT_STEPS[run["jobName"]])

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


def run_local(job, result_step: str, run_config: dict) -> dict:
    """Run an inference job in this process (no webserver): ephemeral instance, in-memory IO."""
    import dagster as dg

    import definitions

    started = time.perf_counter()
    resources = {**definitions.default_resources(), "inference_io": dg.mem_io_manager}
    result = job.execute_in_process(run_config=run_config, resources=resources, instance=dg.DagsterInstance.ephemeral())
    out = result.output_for_node(result_step)
    out["run_id"] = result.run_id
    out["timings"]["total_s"] = round(time.perf_counter() - started, 3)
    return out


def _launch(job: InferenceJob, question: str, url: str, timeout_s: float, on_progress: Callable[[str], None] | None,
            config: dict) -> dict:
    return Client(url).run_and_wait(job.name, config, job.result_step, timeout_s, tags={"rag/question": question[:200]},
                                    on_progress=on_progress)


def ask_run_config(question: str, provider: str | None = None, model: str | None = None, llm_config: dict | None = None, **options) -> dict:
    return job_run_config(ASK_JOB.first_op, question, provider, model, llm_config, **options)


def ask(question: str, url: str = DEFAULT_URL, provider: str | None = None, model: str | None = None, timeout_s: float = 600,
        on_progress: Callable[[str], None] | None = None, llm_config: dict | None = None, **options) -> dict:
    """Ask over GraphQL and wait: returns {question, answer, sources, rephrasings, timings, llm, run_id}."""
    return _launch(ASK_JOB, question, url, timeout_s, on_progress, ask_run_config(question, provider, model, llm_config, **options))


def ask_local(question: str, provider: str | None = None, model: str | None = None, llm_config: dict | None = None, **options) -> dict:
    """The same job in this process (no webserver)."""
    from rag_assets.inference.ask_job import ask_job

    return run_local(ask_job, ASK_JOB.result_step, ask_run_config(question, provider, model, llm_config, **options))


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

    return run_local(sql_job, SQL_JOB.result_step, sql_run_config(question, provider, model, llm_config, **options))


def result(run_id: str, url: str = DEFAULT_URL, timeout_s: float = 0.0) -> dict:
    """The answer of an earlier `ask` or `sql` run by its run id (e.g. after a `RunTimeout`)."""
    return Client(url).result(run_id, timeout_s)
