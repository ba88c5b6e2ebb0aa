"""A warm run worker: a process that imports Dagster and the code location first, then executes one run.

Dagster's code server starts every run in a freshly spawned process, which imports Dagster and the code location
before the run's first step: about 3 s on 2 cores, paid by every `rag ask` while the user waits. Under `rag dev`,
`DevRunLauncher` keeps a worker like this one warm (`rag_assets.warm_workers`) and hands it an interactive run.

Protocol (lines on stdin / stdout): the launcher writes the warm-up request (`WarmUp`, serialized); the worker
loads the code location and the instance, then prints `ready`. The launcher writes a run id; the worker prints
`ok <pid>` and executes the run, or `no <reason>` and exits (the launcher then starts the run the usual way).
It refuses a run of another code location, a run already started or finished, and any run once a project source file
it imported has changed on disk since it loaded them: a run always executes the code on disk, as a freshly
spawned process would. After `ok`, the worker's stdout goes to its stderr (the `dagster dev` terminal).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

WORKER_TAG = "rag/run_worker_pid"  # the run's worker process, for run monitoring and termination
MODULE = "rag_assets.run_worker"


class WarmUp(NamedTuple):
    """What a worker loads before any run: a code location (a serialized `RepositoryPythonOrigin`), the jobs to
    build ahead, and the instance (a serialized `InstanceRef`)."""

    origin: str
    jobs: tuple[str, ...]
    instance_ref: str

    def encode(self) -> str:
        import json

        return json.dumps({"origin": self.origin, "jobs": list(self.jobs), "instance_ref": self.instance_ref})

    @classmethod
    def decode(cls, line: str) -> "WarmUp":
        import json

        data = json.loads(line)
        return cls(data["origin"], tuple(data["jobs"]), data["instance_ref"])


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


def main() -> int:
    warm_up = WarmUp.decode(sys.stdin.readline())
    from dagster import DagsterInstance
    from dagster._core.events import EngineEventData
    from dagster._grpc.impl import core_execute_run
    from dagster._core.origin import RepositoryPythonOrigin
    from dagster._core.storage.dagster_run import DagsterRunStatus
    from dagster._serdes import deserialize_value
    from dagster._utils.hosted_user_process import recon_repository_from_origin
    from dagster._utils.interrupts import capture_interrupts, setup_interrupt_handlers

    setup_interrupt_handlers()  # SIGTERM interrupts like SIGINT, as in Dagster's own run processes
    origin = deserialize_value(warm_up.origin, RepositoryPythonOrigin)
    instance = DagsterInstance.from_ref(deserialize_value(warm_up.instance_ref))
    recon_repo = recon_repository_from_origin(origin)
    repository = recon_repo.get_definition()
    for job in warm_up.jobs:
        if repository.has_job(job):
            repository.get_job(job)
    root = Path(getattr(origin.code_pointer, "working_directory", None) or os.getcwd()).resolve()
    files = project_files(sys.modules, root)
    _say("ready")

    run_id = sys.stdin.readline().strip()
    if not run_id:
        return 0  # the launcher went away
    run = instance.get_run_by_id(run_id)
    if run is None or run.job_code_origin is None:
        _say(f"no run {run_id} not found")
        return 0
    if run.status not in (DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING):  # STARTING: being launched
        _say(f"no run is {run.status.value}")
        return 0
    if run.job_code_origin.repository_origin != origin:
        _say("no the run belongs to another code location")
        return 0
    if changed := changed_files(files):
        _say(f"no {len(changed)} source file(s) changed since this worker loaded them, e.g. {changed[0]}")
        return 0
    pid = os.getpid()
    instance.add_run_tags(run_id, {WORKER_TAG: str(pid)})
    _say(f"ok {pid}")
    os.dup2(2, 1)  # from here on, prints go where the launcher's errors go
    sys.stdin.close()

    recon_job = recon_repo.get_reconstructable_job(run.job_name)
    with capture_interrupts():
        instance.report_engine_event(f"Started process for run (pid: {pid}), a warm run worker.", run,
                                     EngineEventData.in_process(pid))
        try:
            for _ in core_execute_run(recon_job, run, instance, inject_env_vars=False):
                pass
        except Exception:  # core_execute_run writes the failure to the event log before raising
            pass
        finally:
            instance.report_engine_event(f"Process for run exited (pid: {pid}).", run)
            instance.dispose()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C in the `dagster dev` terminal while idle: nothing to clean up
        sys.exit(0)
