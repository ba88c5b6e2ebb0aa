"""A warm run worker: a process that imports Dagster and the code location once, then forks a child per run.

Dagster's code server starts every run in a freshly spawned process, which imports Dagster and the code location
before the run's first step: about 3 s on 2 cores, paid by every `rag ask` while the user waits. Under `rag dev`,
`DevRunLauncher` keeps one worker like this per code location (`rag_assets.warm_workers`) and hands it the
interactive runs; each run executes in a child forked from the loaded worker (milliseconds, copy-on-write), so
there is nothing to warm up again between runs, and many runs can start at once.

Protocol (lines on stdin / stdout): the launcher writes the warm-up request (`WarmUp`); the worker loads the code
location and the modules all its jobs declare their runs import (`run_imports`; no instance, no threads: the parent
stays safe to fork), then prints `ready`. For each run the launcher
writes `{"run_id", "origin"}`; the worker prints `ok <child pid>`, or `no <reason>` and the launcher starts that
run the usual way. It refuses a run of another code location, and, for good (it exits), every run once a
project source or settings file it loaded has changed on disk: a run always executes the code on disk, as a freshly spawned
process would. A child reads nothing from the launcher's pipe and prints to the worker's stderr.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

WORKER_TAG = "rag/run_worker_pid"  # the run's worker process, for run monitoring and termination
MODULE = "rag_assets.run_worker"
RUN_IMPORTS_KEY = "rag/run_imports"  # job metadata: modules the job's steps import on first use


def run_imports(*modules: str) -> dict[str, str]:
    """Job metadata naming the modules a job's runs import lazily (an SDK on the first model call, say): a warm
    worker imports them before forking, so a run does not pay for them while the user waits (`openai` alone took
    1.0-1.3 s of every ask's rewrite step on 2 cores, issue 12)."""
    return {RUN_IMPORTS_KEY: " ".join(modules)}


def declared_imports(job) -> list[str]:
    """The modules a job definition declares with `run_imports` (none when it declares nothing)."""
    value = (getattr(job, "metadata", None) or {}).get(RUN_IMPORTS_KEY)
    return str(getattr(value, "value", value) or "").split()


def preload(modules: list[str]) -> list[str]:
    """Import `modules`; returns the ones that could not be imported (an optional SDK not installed: the run that
    needs it reports that itself), each with its error."""
    import importlib

    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  (any import error: the worker must still serve runs)
            failed.append(f"{name} ({exc.__class__.__name__}: {exc})")
    return failed


class WarmUp(NamedTuple):
    """What a worker loads before any run: a code location (a serialized `RepositoryPythonOrigin`; the worker builds
    all its jobs) and the instance (a serialized `InstanceRef`)."""

    origin: str
    instance_ref: str

    def encode(self) -> str:
        return json.dumps({"origin": self.origin, "instance_ref": self.instance_ref})

    @classmethod
    def decode(cls, line: str) -> "WarmUp":
        data = json.loads(line)
        return cls(data["origin"], data["instance_ref"])


def project_files(modules: Mapping[str, object], root: Path) -> dict[str, int]:
    """Modification times of the imported modules' files under `root` (the code location's working directory),
    outside virtual environments and site-packages: the code a run would re-import if it started fresh."""
    files: dict[str, int] = {}
    for module in list(modules.values()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        resolved = Path(path).resolve()
        if root not in resolved.parents or "site-packages" in resolved.parts or "dist-packages" in resolved.parts:
            continue
        try:
            files[str(resolved)] = resolved.stat().st_mtime_ns
        except OSError:
            continue
    return files


CONFIG_SUFFIXES = (".yaml", ".yml", ".toml")  # settings a code location may read at import (deploy/settings.yaml)


def config_files(root: Path) -> dict[str, int]:
    """Modification times of the settings files in `root` and its first-level folders (hidden ones left out)."""
    files: dict[str, int] = {}
    for folder in [root, *(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for path in entries:
            if path.suffix in CONFIG_SUFFIXES and path.is_file():
                files[str(path)] = path.stat().st_mtime_ns
    return files


def changed_files(files: Mapping[str, int]) -> list[str]:
    """The files of `files` whose modification time is no longer the recorded one (or that are gone)."""
    changed = []
    for path, mtime in files.items():
        try:
            if os.stat(path).st_mtime_ns != mtime:
                changed.append(path)
        except OSError:
            changed.append(path)
    return changed


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _reap(*_: object) -> None:
    """SIGCHLD: collect the runs that ended (each run is a child of the worker)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _execute(instance_ref: str, recon_repo, run_id: str) -> int:
    """In the forked child: execute run `run_id` as Dagster's own run processes do."""
    from dagster import DagsterInstance
    from dagster._core.events import EngineEventData
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._grpc.impl import core_execute_run
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts

    with DagsterInstance.from_ref(deserialize_value(instance_ref)) as instance:
        run = instance.get_run_by_id(run_id)
        if run is None or run.status not in (DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING):
            return 1  # already started elsewhere, or gone: nothing to do
        pid = os.getpid()
        recon_job = recon_repo.get_reconstructable_job(run.job_name)
        with capture_interrupts():
            instance.report_engine_event(f"Started process for run (pid: {pid}), forked from a warm run worker.", run,
                                         EngineEventData.in_process(pid))
            try:
                for _ in core_execute_run(recon_job, run, instance, inject_env_vars=False):
                    pass
            except Exception:  # core_execute_run writes the failure to the event log before raising
                pass
            finally:
                instance.report_engine_event(f"Process for run exited (pid: {pid}).", run)
    return 0


def _fork_run(instance_ref: str, recon_repo, run_id: str) -> int:
    """Fork a child that executes the run; the parent gets its pid and goes on waiting for runs."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        gc.enable()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from dagster._utils.interrupts import setup_interrupt_handlers

        setup_interrupt_handlers()  # SIGTERM interrupts like SIGINT, as in Dagster's own run processes
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the launcher's pipes stay with the worker
        os.dup2(2, 1)  # the run's prints go where the launcher's errors go
        code = _execute(instance_ref, recon_repo, run_id)
    except BaseException:  # noqa: BLE001  the child must never return into the parent's loop
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def main() -> int:
    gc.disable()  # no collections while loading: they would leave freed holes in pages the children share
    warm_up = WarmUp.decode(sys.stdin.readline())
    import threading

    import dagster._grpc.impl  # noqa: F401  (what executing a run imports, loaded before any run)
    from dagster._core.origin import RepositoryPythonOrigin
    from dagster._serdes import deserialize_value
    from dagster._utils.hosted_user_process import recon_repository_from_origin

    origin = deserialize_value(warm_up.origin, RepositoryPythonOrigin)
    recon_repo = recon_repository_from_origin(origin)
    repository = recon_repo.get_definition()
    for job in repository.job_names:  # every job's: the next run may be of any (all 8 build in about 10 ms)
        if failed := preload(declared_imports(repository.get_job(job))):
            print(f"run worker: {job}: could not import {', '.join(failed)}", file=sys.stderr)
    root = Path(getattr(origin.code_pointer, "working_directory", None) or os.getcwd()).resolve()
    files = {**project_files(sys.modules, root), **config_files(root)}
    signal.signal(signal.SIGCHLD, _reap)
    gc.freeze()  # what is loaded now is never collected, so a child's collections do not copy the shared pages
    _say("ready")

    for line in sys.stdin:
        request = json.loads(line)
        if deserialize_value(request["origin"], RepositoryPythonOrigin) != origin:
            _say("no the run belongs to another code location")
            continue
        if changed := changed_files(files):
            _say(f"no {len(changed)} source or settings file(s) changed since this worker loaded them, e.g. {changed[0]}")
            return 0  # stale for good: the launcher starts a fresh worker
        if threading.active_count() > 1:  # forking a process with threads can leave a child holding dead locks
            _say(f"no the worker started {threading.active_count() - 1} thread(s) and cannot fork safely")
            return 0
        _say(f"ok {_fork_run(warm_up.instance_ref, recon_repo, request['run_id'])}")
    return 0  # the launcher went away


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C in the `dagster dev` terminal while idle: nothing to clean up
        sys.exit(0)
