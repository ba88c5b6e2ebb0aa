"""A throwaway PostgreSQL server on a free loopback port, for tests; the binaries come from the `pgserver` wheel.

pgserver's own `get_server` listens on a unix socket only and, under root, adds a system user with `useradd`
and opens every parent folder of the venv to it. Here the server listens on 127.0.0.1:<free port> only (no
unix socket), in its own temp folder, and under root (CI, containers) `initdb` and `postgres` run as
`nobody`, since PostgreSQL refuses to run as root; from a copy of the binaries when `nobody` cannot reach
the wheel's. The server stops, and the folder goes, when the context exits, whatever happened inside.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2

from rag_assets.devserver import free_port

# The wheel's PostgreSQL install (found without importing `pgserver`, whose import sets up lock files).
PGINSTALL = Path(importlib.util.find_spec("pgserver").submodule_search_locations[0]) / "pginstall"
UNPRIVILEGED_USER = "nobody"
# A test server: no durability, no unix socket, loopback TCP only.
SERVER_SETTINGS = {"listen_addresses": "127.0.0.1", "unix_socket_directories": "", "fsync": "off",
                   "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "200"}


@contextmanager
def postgres_server(timeout_s: float = 60) -> Iterator[str]:
    """Initialise and start a server; yields `postgresql://postgres@127.0.0.1:<port>/postgres`; stops it on exit."""
    root = Path(tempfile.mkdtemp(prefix="rag-pg-"))
    try:
        run_as = _run_as()
        if run_as:
            os.chown(root, run_as["user"], run_as["group"])
        bin_dir = _reachable_bin_dir(root, run_as)
        data = root / "data"
        initdb = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                                 "--locale=C", "--no-sync"], capture_output=True, text=True, **run_as)
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed ({initdb.returncode}):\n{initdb.stdout}{initdb.stderr}")
        proc, url = _start(bin_dir, data, root / "postgres.log", run_as, timeout_s)
        try:
            yield url
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """Create database `name` on the server at `url` (a server URL); returns the URL of the new database."""
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    return f"{url.rsplit('/', 1)[0]}/{name}"


def _run_as() -> dict:
    """subprocess keyword arguments that drop root to an unprivileged user; none when not root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _reachable_bin_dir(root: Path, run_as: dict) -> Path:
    """The wheel's bin folder if the server's user can run it, else a copy of the install under `root`."""
    try:
        subprocess.run([str(PGINSTALL / "bin" / "postgres"), "--version"], check=True, capture_output=True, **run_as)
        return PGINSTALL / "bin"
    except (OSError, subprocess.CalledProcessError):
        # The binaries find their shared libraries at $ORIGIN/../../../pgserver.libs (the wheel's layout): keep it.
        site = root / "site-packages"
        shutil.copytree(PGINSTALL, site / "pgserver" / "pginstall", symlinks=True)
        if (PGINSTALL.parents[1] / "pgserver.libs").is_dir():
            shutil.copytree(PGINSTALL.parents[1] / "pgserver.libs", site / "pgserver.libs", symlinks=True)
        for folder, _, _ in os.walk(site):
            os.chmod(folder, 0o755)
        return site / "pgserver" / "pginstall" / "bin"


def _start(bin_dir: Path, data: Path, log: Path, run_as: dict, timeout_s: float, attempts: int = 3) -> tuple[subprocess.Popen, str]:
    """Start `postgres` on a free port (another one if that port was taken meanwhile); wait until it accepts connections."""
    for attempt in range(attempts):
        port = free_port()
        settings = [arg for key, value in {**SERVER_SETTINGS, "port": str(port)}.items() for arg in ("-c", f"{key}={value}")]
        with log.open("ab") as out:
            proc = subprocess.Popen([str(bin_dir / "postgres"), "-D", str(data), *settings], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, **run_as)
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                psycopg2.connect(url, connect_timeout=2).close()
                return proc, url
            except psycopg2.OperationalError:
                time.sleep(0.1)
        _stop(proc)
        if "could not bind" not in log.read_text(errors="replace") or attempt == attempts - 1:
            break
    raise RuntimeError(f"PostgreSQL did not start; its log ({log}):\n{log.read_text(errors='replace')[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT: roll back, close connections, checkpoint); SIGKILL the group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
