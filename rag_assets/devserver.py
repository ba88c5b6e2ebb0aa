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
import time
from pathlib import Path

import httpx

# Runs launch at once (no queue to wait on): inference runs are awaited by a client. Run retries on,
# for the jobs that ask for them with `dagster/max_retries` (ingest and purge; not inference runs).
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
run_retries:
  enabled: true
  max_retries: 0
"""


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
    """Milvus Lite server + `dagster dev` (webserver, daemon, code server) under one RAG_HOME."""

    def __init__(self, home: Path, port: int, milvus_port: int, sources: Path, workspace: Path, log_dir: Path | None = None):
        self.home, self.port, self.milvus_port = home.resolve(), port, milvus_port
        self.sources, self.workspace = sources.resolve(), workspace.resolve()
        self.log_dir = log_dir
        self.url = f"http://127.0.0.1:{port}"
        self.milvus_uri = f"http://127.0.0.1:{milvus_port}"
        self._milvus: subprocess.Popen | None = None
        self._dagster: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        dagster_home = self.home / "dagster_home"
        dagster_home.mkdir(parents=True, exist_ok=True)
        config = dagster_home / "dagster.yaml"
        if not config.exists():
            config.write_text(DAGSTER_YAML)
        return {**os.environ, "DAGSTER_HOME": str(dagster_home), "RAG_HOME": str(self.home), "RAG_MILVUS_URI": self.milvus_uri,
                "RAG_SOURCES": str(self.sources), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def _out(self, name: str):
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return (self.log_dir / name).open("ab")

    def start(self, timeout_s: float = 180) -> "DevStack":
        (self.home / "milvus").mkdir(parents=True, exist_ok=True)
        milvus_log = self._out("milvus.log") or (self.home / "milvus.log").open("ab")
        self._milvus = subprocess.Popen(
            [bin_path("milvus-lite"), "server", "--data-dir", str(self.home / "milvus"), "--host", "127.0.0.1", "--port", str(self.milvus_port)],
            stdout=milvus_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.milvus_port, 60, self._milvus)
        dagster_log = self._out("dagster.log")
        self._dagster = subprocess.Popen(
            [bin_path("dagster"), "dev", "-w", str(self.workspace), "-h", "127.0.0.1", "-p", str(self.port)],
            env=self.environment(), cwd=str(self.workspace.parent), stdout=dagster_log, stderr=subprocess.STDOUT if dagster_log else None,
            start_new_session=True,
        )
        self.wait_until_ready(timeout_s)
        return self

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


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_dev(home: Path, port: int, milvus_port: int, sources: Path, workspace: Path) -> int:
    """Start the stack in the foreground; stop both servers on exit, Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stack = DevStack(home, port, milvus_port, sources, workspace)
    try:
        stack.start(timeout_s=600)
        print(f"milvus-lite server on {stack.milvus_uri} (data in {stack.home / 'milvus'})", file=sys.stderr)
        print(f"dagster dev on {stack.url} (DAGSTER_HOME={stack.home / 'dagster_home'}); Ctrl-C stops both", file=sys.stderr)
        return stack.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
