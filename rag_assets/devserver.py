"""`rag dev`: a Milvus Lite server on loopback plus `dagster dev`, wired together by environment.

Milvus Lite lets one process open a database file, while Dagster runs steps, sensors and the
webserver in separate processes; so in dev every process talks to one `milvus-lite server` over
http://127.0.0.1:<port>, the same code path as a Milvus server in production.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAGSTER_YAML = """\
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 4
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


def bin_path(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def start_milvus(data_dir: Path, port: int, log_file: Path) -> subprocess.Popen:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = log_file.open("ab")
    proc = subprocess.Popen(
        [bin_path("milvus-lite"), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    wait_for_port("127.0.0.1", port, 60, proc)
    return proc


def dev_environment(home: Path, milvus_port: int, sources: Path) -> dict[str, str]:
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(dagster_home),
        RAG_HOME=str(home),
        RAG_MILVUS_URI=f"http://127.0.0.1:{milvus_port}",
        RAG_SOURCES=str(sources),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    return env


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_dev(home: Path, port: int, milvus_port: int, sources: Path, workspace: Path) -> int:
    """Start Milvus Lite, then `dagster dev` in the foreground; stop both on exit or Ctrl-C."""
    home = home.resolve()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    milvus = start_milvus(home / "milvus", milvus_port, home / "milvus.log")
    print(f"milvus-lite server on http://127.0.0.1:{milvus_port} (data in {home / 'milvus'})", file=sys.stderr)
    env = dev_environment(home, milvus_port, sources.resolve())
    dagster = subprocess.Popen(
        [bin_path("dagster"), "dev", "-w", str(workspace.resolve()), "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=str(workspace.resolve().parent),
    )
    print(f"dagster dev on http://127.0.0.1:{port} (DAGSTER_HOME={env['DAGSTER_HOME']})", file=sys.stderr)
    try:
        return dagster.wait()
    except KeyboardInterrupt:
        dagster.send_signal(signal.SIGINT)
        return dagster.wait(timeout=60)
    finally:
        if dagster.poll() is None:
            dagster.terminate()
        os.killpg(milvus.pid, signal.SIGTERM)
        milvus.wait(timeout=30)
