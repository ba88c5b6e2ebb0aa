"""Warm run workers (`rag_assets.run_worker`), one per code location, for `DevRunLauncher`.

The first interactive run of a code location starts the usual way and starts its worker warming up; later ones are
handed to the warm worker, which forks a child per run. A worker that refuses a run (changed source files) or does
not answer in time is replaced by a fresh one; the run then starts the usual way, so a run is never lost to the
pool. `RAG_WARM_RUN_WORKERS=0` turns the workers off.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from rag_assets.run_worker import MODULE, WarmUp

WARM_WORKERS_ENV = "RAG_WARM_RUN_WORKERS"
READY_WAIT_S = 4.0  # how long a run waits for a worker still warming up (a cold start costs about 3 s more)
REPLY_WAIT_S = 15.0  # how long a worker may take to accept or refuse a run


def pool_enabled(platform: str = sys.platform) -> bool:
    """Whether interactive runs go to warm workers: `$RAG_WARM_RUN_WORKERS` (1/0, true/false, on/off, yes/no), by default
    on Linux only. Workers fork: Windows cannot, and on macOS a process that loaded system frameworks may crash when
    forked, so there they are opt-in."""
    value = os.environ.get(WARM_WORKERS_ENV, "").strip().lower()
    if value in ("0", "false", "off", "no"):
        return False
    if value in ("1", "true", "on", "yes"):
        return hasattr(os, "fork")
    return platform.startswith("linux")


@dataclass
class Worker:
    """One worker process and the lines it printed (read by a thread, so that waiting has a timeout)."""

    proc: subprocess.Popen
    lines: "queue.Queue[str | None]" = field(default_factory=queue.Queue)
    ready: threading.Event = field(default_factory=threading.Event)
    asking: threading.Lock = field(default_factory=threading.Lock)  # one request at a time: replies come in order

    @classmethod
    def start(cls, executable: str, warm_up: WarmUp) -> "Worker":
        proc = subprocess.Popen([executable, "-m", MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                bufsize=1)
        worker = cls(proc)
        threading.Thread(target=worker._read, name=f"warm-run-worker-{proc.pid}", daemon=True).start()
        assert proc.stdin is not None
        proc.stdin.write(warm_up.encode() + "\n")
        proc.stdin.flush()
        return worker

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == "ready":
                self.ready.set()
            else:
                self.lines.put(line.strip())
        self.lines.put(None)
        self.ready.set()  # wakes a run waiting for a worker that died warming up (it then checks `alive`)
        self.proc.wait()  # reap it

    def alive(self) -> bool:
        return self.proc.poll() is None

    def hand_over(self, run_id: str, origin: str) -> tuple[int | None, str]:
        """Give the worker `run_id`: (the pid of the child executing it, "") if it took the run, else (None, why not)."""
        with self.asking:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"run_id": run_id, "origin": origin}) + "\n")
                self.proc.stdin.flush()
                reply = self.lines.get(timeout=REPLY_WAIT_S)
            except (OSError, queue.Empty) as exc:
                self.stop()
                return None, f"no answer from the warm worker ({type(exc).__name__})"
        if reply and reply.startswith("ok "):
            return int(reply.split()[1]), ""
        return None, reply[3:] if reply and reply.startswith("no ") else "the warm worker exited"

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()


class WarmWorkerPool:
    """One warm worker per code location (`RepositoryPythonOrigin`), started on that location's first run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: dict[str, Worker] = {}
        atexit.register(self.close)

    def take_run(self, origin: str, executable: str | None, run_id: str, instance_ref: str) -> tuple[int | None, str]:
        """Hand run `run_id` to this location's warm worker: (the pid executing it, "") or (None, why it starts cold)."""
        with self._lock:
            warm_up = WarmUp(origin, instance_ref)
            executable = executable or sys.executable
            worker = self._workers.get(origin)
            if worker is None or not worker.alive():
                self._workers[origin] = Worker.start(executable, warm_up)
                return None, "no warm worker yet (one is warming up for the next run)"
        if not worker.ready.wait(READY_WAIT_S):
            return None, "the warm worker is still warming up"
        pid, why = worker.hand_over(run_id, origin) if worker.alive() else (None, "the warm worker exited")
        if pid is None:
            with self._lock:  # it refused for good or died: a fresh one for the next run
                if self._workers.get(origin) is worker:
                    worker.stop()
                    self._workers[origin] = Worker.start(executable, warm_up)
        return pid, why

    def close(self) -> None:
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.stop()


_pool: WarmWorkerPool | None = None
_pool_lock = threading.Lock()


def warm_pool() -> WarmWorkerPool:
    """This process's pool (the webserver and the daemon each launch runs, so each has its own)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WarmWorkerPool()
        return _pool


def worker_alive(pid: int) -> bool:
    """Whether `pid` is a live run worker (not a process that reused the pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return MODULE.encode() in f.read()
    except OSError:
        if sys.platform.startswith("linux"):
            return False
    try:  # no /proc: the pid alone
        os.kill(pid, 0)
        return True
    except OSError:
        return False

