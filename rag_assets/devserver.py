"""`rag dev`: a Milvus Lite server on loopback plus `dagster dev`, wired together by environment.

Milvus Lite lets one process open a database file, while Dagster runs steps, sensors and the
webserver in separate processes; so in dev every process talks to one `milvus-lite server` over
http://127.0.0.1:<port>, the same code path as a Milvus server in production. The end-to-end tests
start the same `DevStack`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
from dagster import DefaultRunLauncher
from dagster._core.errors import DagsterUserCodeUnreachableError, DagsterUserCodeUnreachableTimeoutError
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
from dagster._serdes import deserialize_value, serialize_value

from rag_assets.model_servers import ServerProcess, ServerSpec, default_specs
from rag_assets.run_worker import WORKER_TAG
from rag_assets.warm_workers import pool_enabled, warm_pool, worker_alive

# The instance `rag dev` writes into DAGSTER_HOME (see docs/operations.md):
# - Runs go through Dagster's run queue so that two runs writing one partition never overlap: at most one
#   in-progress run per value of `dagster/partition` (`<source>|<variant>`: every ingest or experiment run,
#   whether a sensor, the schedule, a backfill or the UI launched it), and one per value of `rag/source` (the
#   sensor's and the schedule's ingest runs and the purge run of that source). Runs of other variants of a
#   source (experiments) run at once.
#   Runs without those tags are not limited. Of them, the interactive ones (ask_job, sql_job: `rag/kind` ask or
#   sql) skip the queue and launch when submitted (`DevRunCoordinator`): the queue is polled once a second, which
#   cost an ask about 0.6 s at the median. The rest (the warehouse refresh, ...) are queued as before.
# - Run monitoring with `DevRunLauncher`: a run whose worker died (a killed `dagster dev`, an OOM kill) ends
#   FAILURE within seconds of the next `dagster dev` start instead of staying STARTED and holding its
#   partition's slot; run retries (asked for by ingest and purge runs with `dagster/max_retries`) then re-run it.
# - One slot per op pool: the `index` steps and the purge (pool `milvus_index`) take turns, since a purge on
#   Milvus Lite rewrites the whole collection; at op granularity nothing else waits. A run that died holding
#   the slot gives it back 5 s after monitoring ends it (`free_slots_after_run_end_seconds`).
# - Storage: SQLite files in DAGSTER_HOME; with RAG_DAGSTER_POSTGRES_URL set (or `rag dev --postgres-url`), runs,
#   events and schedules go to that PostgreSQL database instead (POSTGRES_STORAGE_YAML: the file names the variable,
#   never the URL and its password).
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: rag_assets.devserver
  class: DevRunCoordinator
  config:
    dequeue_interval_seconds: 1
    dequeue_use_threads: true
    dequeue_num_workers: 4
run_launcher:
  module: rag_assets.devserver
  class: DevRunLauncher
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 60
  poll_interval_seconds: 5
  free_slots_after_run_end_seconds: 5
run_retries:
  enabled: true
  max_retries: 0
concurrency:
  runs:
    max_concurrent_runs: -1
    tag_concurrency_limits:
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: rag/source
        value:
          applyLimitPerUniqueValue: true
        limit: 1
  pools:
    default_limit: 1
    granularity: op
"""

POSTGRES_URL_ENV = "RAG_DAGSTER_POSTGRES_URL"
POSTGRES_STORAGE_YAML = f"""\
storage:
  postgres:
    postgres_url:
      env: {POSTGRES_URL_ENV}
"""


def dagster_yaml(postgres: bool = False) -> str:
    """The dagster.yaml `rag dev` writes: SQLite storage in DAGSTER_HOME, or PostgreSQL at $RAG_DAGSTER_POSTGRES_URL."""
    return DAGSTER_YAML + (POSTGRES_STORAGE_YAML if postgres else "")


def sqlalchemy_postgres_url(url: str) -> str:
    """`url` with psycopg2 named as its driver: SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3, which
    dagster-postgres does not install."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if sep and scheme in ("postgres", "postgresql") else url


PREVIOUS_QUEUE_YAML = 'telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 1\n    dequeue_use_threads: true\n    dequeue_num_workers: 4\nrun_launcher:\n  module: rag_assets.devserver\n  class: DevRunLauncher\nrun_monitoring:\n  enabled: true\n  start_timeout_seconds: 180\n  cancel_timeout_seconds: 60\n  poll_interval_seconds: 5\n  free_slots_after_run_end_seconds: 5\nrun_retries:\n  enabled: true\n  max_retries: 0\nconcurrency:\n  runs:\n    max_concurrent_runs: -1\n    tag_concurrency_limits:\n      - key: dagster/partition\n        value:\n          applyLimitPerUniqueValue: true\n        limit: 1\n  pools:\n    default_limit: 1\n    granularity: op\n'

PREVIOUS_MONITORED_QUEUE_YAML = 'telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 1\n    dequeue_use_threads: true\n    dequeue_num_workers: 4\nrun_launcher:\n  module: rag_assets.devserver\n  class: DevRunLauncher\nrun_monitoring:\n  enabled: true\n  start_timeout_seconds: 180\n  cancel_timeout_seconds: 60\n  poll_interval_seconds: 5\n  free_slots_after_run_end_seconds: 5\nrun_retries:\n  enabled: true\n  max_retries: 0\nconcurrency:\n  runs:\n    max_concurrent_runs: -1\n    tag_concurrency_limits:\n      - key: dagster/partition\n        value:\n          applyLimitPerUniqueValue: true\n        limit: 1\n      - key: rag/source\n        value:\n          applyLimitPerUniqueValue: true\n        limit: 1\n  pools:\n    default_limit: 1\n    granularity: op\n'

# Every dagster.yaml an earlier `rag dev` wrote: such a file is replaced by DAGSTER_YAML; any other is the user's.
PREVIOUS_DAGSTER_YAMLS = (
    "telemetry:\n  enabled: false\nrun_queue:\n  max_concurrent_runs: 4\n",
    "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n",
    "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
    "run_retries:\n  enabled: true\n  max_retries: 0\n",
    PREVIOUS_QUEUE_YAML,
    PREVIOUS_MONITORED_QUEUE_YAML,
)


def ensure_dagster_yaml(path: Path, postgres: bool = False) -> str | None:
    """Write `dagster_yaml(postgres)` at `path` if missing or written by a `rag dev` (this one, with the other storage,
    or an earlier one); else leave it and return a warning."""
    wanted = dagster_yaml(postgres)
    current = path.read_text() if path.exists() else None
    if current == wanted:
        return None
    earlier = (*PREVIOUS_DAGSTER_YAMLS, PREVIOUS_MONITORED_QUEUE_YAML + POSTGRES_STORAGE_YAML)
    if current is None or current in (*earlier, dagster_yaml(not postgres)):
        path.write_text(wanted)
        return None
    return (f"warning: {path} was not written by `rag dev` and is left as it is; without a run queue limited per "
            "`dagster/partition`, run monitoring and run retries, two runs of one source may overlap and a run whose "
            f"worker died stays STARTED. To get them, add (or merge) what `rag dev` writes:\n{wanted}")


INTERACTIVE_KINDS = frozenset({"ask", "sql"})  # `rag/kind` of the runs a user waits on
LIMITED_TAGS = ("dagster/partition", "rag/source")  # the tags the queue limits (DAGSTER_YAML)


def launches_at_once(tags: Mapping[str, str]) -> bool:
    """Whether a run skips the queue: an interactive run that no concurrency limit applies to."""
    return tags.get("rag/kind") in INTERACTIVE_KINDS and not any(tag in tags for tag in LIMITED_TAGS)


DIRECT_LAUNCHES = 2  # at most this many runs launched by the webserver itself at once; the others are queued
_direct_launches = threading.BoundedSemaphore(DIRECT_LAUNCHES)


class DevRunCoordinator(QueuedRunCoordinator):
    """Dagster's run queue, except for interactive runs (`launches_at_once`): the webserver launches those itself
    when submitted, as Dagster's `DefaultRunCoordinator` does every run, since they hold no partition.

    Launching starts the run's process inside the `launchRun` call, so at most `DIRECT_LAUNCHES` are launched that
    way at a time: a burst of asks (twenty at once took the webserver past the client's 30 s timeout) queues the
    rest, and the daemon launches them as it launches every other run."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        if run.status != DagsterRunStatus.NOT_STARTED or not launches_at_once(run.tags):
            return super().submit_run(context)
        if not _direct_launches.acquire(blocking=False):
            return super().submit_run(context)
        try:
            self._instance.launch_run(run.run_id, context.workspace)
        finally:
            _direct_launches.release()
        launched = self._instance.get_run_by_id(run.run_id)
        if launched is None:
            raise RuntimeError(f"run {run.run_id} vanished while launching")
        return launched


class DevRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher, plus warm run workers for interactive runs and a worker health check.

    An interactive run (`launches_at_once`) executes in a child forked from a warm run worker
    (`rag_assets.warm_workers`: a process that imported Dagster and the code location before the run existed)
    instead of a process the code server spawns for it, which imports both first; if the worker is not ready, or
    refuses the run, the run starts the usual way.

    A STARTED run is healthy while its process runs (`rag/run_worker_pid`), or else while the code server
    that launched it (its `dagster/grpc_info` tag) still runs it; a server that is gone, or that no longer knows
    the run, means the worker died with it.
    """

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if launches_at_once(run.tags) and run.job_code_origin is not None and pool_enabled():
            origin = run.job_code_origin.repository_origin
            pid, why = warm_pool().take_run(serialize_value(origin), origin.executable_path, run.run_id,
                                            serialize_value(self._instance.get_ref()))
            if pid is not None:
                self._instance.add_run_tags(run.run_id, {WORKER_TAG: str(pid)})
                self._run_ids.add(run.run_id)
                return
            self._instance.report_engine_event(f"Starting the run in a new process: {why}.", run, cls=self.__class__)
        super().launch_run(context)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or WORKER_TAG not in run.tags:
            return super().terminate(run_id)
        if run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        pid = int(run.tags[WORKER_TAG])
        if not worker_alive(pid):
            return False
        os.kill(pid, signal.SIGINT)  # the worker's run stops at its next interruptible point, as Dagster's do
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if WORKER_TAG in run.tags:
            pid = int(run.tags[WORKER_TAG])
            if worker_alive(pid):
                return CheckRunHealthResult(WorkerStatus.RUNNING)
            return CheckRunHealthResult(WorkerStatus.FAILED, f"its warm run worker (pid {pid}) is gone")
        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no code server recorded for the run: cannot tell")
        try:
            result = deserialize_value(client.can_cancel_execution(CanCancelExecutionRequest(run_id=run.run_id), timeout=15),
                                       CanCancelExecutionResult)
        except DagsterUserCodeUnreachableTimeoutError:  # a busy server is not a dead one: look again next poll
            return CheckRunHealthResult(WorkerStatus.RUNNING, "code server slow to answer")
        except DagsterUserCodeUnreachableError:
            return CheckRunHealthResult(WorkerStatus.FAILED, f"the code server that ran it ({client.socket or client.port}) is gone")
        if result.can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the code server ({client.socket or client.port}) no longer runs it")


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before listening on {host}:{port}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_path(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


class DevStack:
    """Milvus Lite server + `dagster dev` (webserver, daemon, code server) under one RAG_HOME, and with
    `model_servers` the servers that hold the models for every run (`rag_assets.model_servers`).

    `env` adds to the environment of all (tests set knobs such as RAG_MILVUS_WRITE_BATCH there).
    """

    def __init__(self, home: Path, port: int, milvus_port: int, sources: Path, workspace: Path, log_dir: Path | None = None,
                 env: dict[str, str] | None = None, model_servers: list[ServerSpec] | None = None):
        self.home, self.port, self.milvus_port = home.resolve(), port, milvus_port
        self.sources, self.workspace = sources.resolve(), workspace.resolve()
        self.log_dir = log_dir
        self.env = dict(env or {})
        self.model_servers = list(model_servers or [])
        self.servers: list[ServerProcess] = []
        self.url = f"http://127.0.0.1:{port}"
        self.milvus_uri = f"http://127.0.0.1:{milvus_port}"
        self._milvus: subprocess.Popen | None = None
        self._dagster: subprocess.Popen | None = None

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    def environment(self) -> dict[str, str]:
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        return {**os.environ, "DAGSTER_HOME": str(self.dagster_home), "RAG_HOME": str(self.home), "RAG_MILVUS_URI": self.milvus_uri,
                "RAG_SOURCES": str(self.sources), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **self.env}

    def _out(self, name: str):
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return (self.log_dir / name).open("ab")

    def start(self, timeout_s: float = 180) -> "DevStack":
        self.start_model_servers(timeout_s)
        self.start_milvus()
        self.start_dagster(timeout_s)
        return self

    def start_model_servers(self, timeout_s: float = 180) -> None:
        """Start every model server, wait until each is healthy (model loaded), and hand its URL to the runs."""
        for spec in self.model_servers:
            server = ServerProcess(spec, free_port(), self.environment(), (self.log_dir or self.home / "logs") / f"{spec.name}-server.log")
            server.start()
            self.servers.append(server)
        for server in self.servers:
            server.wait_healthy(timeout_s)
            self.env[server.spec.env_var] = server.url

    def start_milvus(self, timeout_s: float = 60) -> None:
        """Start (or restart, on the same data folder and port) the Milvus Lite server."""
        (self.home / "milvus").mkdir(parents=True, exist_ok=True)
        milvus_log = self._out("milvus.log") or (self.home / "milvus.log").open("ab")
        self._milvus = subprocess.Popen(
            [bin_path("milvus-lite"), "server", "--data-dir", str(self.home / "milvus"), "--host", "127.0.0.1", "--port", str(self.milvus_port)],
            env=self.environment(), stdout=milvus_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.milvus_port, timeout_s, self._milvus)

    def start_dagster(self, timeout_s: float = 180) -> None:
        """Start (or restart, on the same DAGSTER_HOME) `dagster dev`, writing or upgrading its dagster.yaml first."""
        env = self.environment()
        if env.get(POSTGRES_URL_ENV):
            env[POSTGRES_URL_ENV] = sqlalchemy_postgres_url(env[POSTGRES_URL_ENV])
        warning = ensure_dagster_yaml(self.dagster_home / "dagster.yaml", postgres=bool(env.get(POSTGRES_URL_ENV)))
        if warning:
            print(warning, file=sys.stderr)
        dagster_log = self._out("dagster.log")
        self._dagster = subprocess.Popen(
            [bin_path("dagster"), "dev", "-w", str(self.workspace), "-h", "127.0.0.1", "-p", str(self.port)],
            env=env, cwd=str(self.workspace.parent), stdout=dagster_log, stderr=subprocess.STDOUT if dagster_log else None,
            start_new_session=True,
        )
        self.wait_until_ready(timeout_s)

    def kill_milvus(self) -> None:
        """SIGKILL the Milvus Lite server (a crash, for fault tests)."""
        _kill_group(self._milvus, signal.SIGKILL)

    def kill_dagster(self) -> None:
        """SIGKILL `dagster dev` with its daemon, code server and run workers (a crash, for fault tests)."""
        _kill_group(self._dagster, signal.SIGKILL)

    def wait_until_ready(self, timeout_s: float) -> None:
        """The webserver answers and the code location has loaded."""
        deadline = time.monotonic() + timeout_s
        query = '{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }'
        while time.monotonic() < deadline:
            if self._dagster and self._dagster.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self._dagster.returncode}")
            try:
                data = httpx.post(f"{self.url}/graphql", json={"query": query}, timeout=5).json()["data"]
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and all((e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation" for e in entries):
                    return
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                pass
            time.sleep(1)
        raise TimeoutError(f"dagster dev at {self.url} not ready after {timeout_s:.0f}s")

    def stop(self) -> None:
        try:
            self._stop_stack()
        finally:
            for server in self.servers:
                server.stop()

    def _stop_stack(self) -> None:
        for proc in (self._dagster, self._milvus):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in (self._dagster, self._milvus):
            if proc is not None:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

    def wait(self) -> int:
        assert self._dagster is not None
        return self._dagster.wait()


def _kill_group(proc: subprocess.Popen | None, sig: int) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, sig)
    if proc is not None:
        proc.wait(timeout=60)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_dev(home: Path, port: int, milvus_port: int, sources: Path, workspace: Path, postgres_url: str | None = None,
            model_servers: bool = True) -> int:
    """Start the stack in the foreground; stop every server on exit, Ctrl-C or SIGTERM. With `postgres_url`
    (else $RAG_DAGSTER_POSTGRES_URL), Dagster's storage is that PostgreSQL database instead of SQLite files.
    With `model_servers`, the models are served once for every run (runs load nothing themselves)."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stack = DevStack(home, port, milvus_port, sources, workspace, env={POSTGRES_URL_ENV: postgres_url} if postgres_url else None,
                     model_servers=default_specs() if model_servers else None)
    storage = "PostgreSQL" if postgres_url or os.environ.get(POSTGRES_URL_ENV) else "SQLite"
    try:
        stack.start(timeout_s=600)
        for server in stack.servers:
            print(f"{server.spec.name} server on {server.url} ({server.spec.env_var}; log {server.log})", file=sys.stderr)
        print(f"milvus-lite server on {stack.milvus_uri} (data in {stack.home / 'milvus'})", file=sys.stderr)
        print(f"dagster dev on {stack.url} (DAGSTER_HOME={stack.home / 'dagster_home'}, {storage} storage); Ctrl-C stops them all",
              file=sys.stderr)
        return stack.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
