"""Warm run workers: interactive runs execute in children forked from a process that imported the code location
before the runs existed; a worker refuses runs once a source file changed; termination and run monitoring reach the
run's process.

Real processes and a real on-disk instance: the worker opens the instance from its ref, as a run process does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.launcher import WorkerStatus
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._serdes import serialize_value

from rag_assets.run_worker import WORKER_TAG, changed_files, config_files, declared_imports, preload, project_files, run_imports
from rag_assets.warm_workers import WARM_WORKERS_ENV, WarmWorkerPool, pool_enabled, worker_alive

LOCATION = '''
import os, sys, time
from pathlib import Path
import dagster as dg

@dg.op(config_schema={"out": str, "sleep_s": float})
def record_pid(context):
    preloaded = "wave" in sys.modules and "tabnanny" in sys.modules  # declared below: imported by the worker, before this run existed
    for _ in range(int(context.op_config["sleep_s"] * 20)):
        time.sleep(0.05)
    Path(context.op_config["out"] + ".preloaded").write_text(str(preloaded))
    Path(context.op_config["out"]).write_text(str(os.getpid()))

# a module no one imports (wave) and one that does not exist: the worker imports the first and still serves runs
@dg.job(executor_def=dg.in_process_executor, tags={"rag/kind": "ask"},
        metadata={"rag/run_imports": "wave no_such_module_for_rag_tests"})
def ask_like():
    record_pid()

# another interactive job: the worker started for ask_like runs imports what its runs import too
@dg.job(executor_def=dg.in_process_executor, tags={"rag/kind": "sql"}, metadata={"rag/run_imports": "tabnanny"})
def sql_like():
    record_pid()

defs = dg.Definitions(jobs=[ask_like, sql_like])
'''

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = {"run_launcher": {"module": "rag_assets.devserver", "class": "DevRunLauncher"}}


@pytest.fixture()
def location(tmp_path: Path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "warm_location.py").write_text(LOCATION)
    recon_repo = ReconstructableRepository.for_file(str(code / "warm_location.py"), "defs", working_directory=str(code))
    return code, recon_repo.get_reconstructable_job("ask_like")


def home(tmp_path: Path) -> str:
    (tmp_path / "home").mkdir(exist_ok=True)
    return str(tmp_path / "home")


def make_run(instance: dg.DagsterInstance, recon_job, out: Path, sleep_s: float = 0.0):
    config = {"ops": {"record_pid": {"config": {"out": str(out), "sleep_s": sleep_s}}}}
    return instance.create_run_for_job(recon_job.get_definition(), run_config=config, tags={"rag/kind": "ask"},
                                       job_code_origin=recon_job.get_python_origin())


def wait_finished(instance: dg.DagsterInstance, run_id: str, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout_s} s")


def warmed_pool(instance: dg.DagsterInstance, recon_job, tmp_path: Path) -> WarmWorkerPool:
    """A pool whose worker for the location is ready (the location's first run starts it warming)."""
    pool = WarmWorkerPool()
    first = make_run(instance, recon_job, tmp_path / "first.txt")
    origin = serialize_value(recon_job.get_python_origin().repository_origin)
    pid, why = pool.take_run(origin, None, first.run_id, serialize_value(instance.get_ref()))
    assert pid is None and "warming up" in why
    worker = pool._workers[origin]
    assert worker.ready.wait(120) and worker.alive(), "the worker never became ready"
    return pool


def test_interactive_runs_execute_in_children_of_the_warm_worker(tmp_path: Path, location, monkeypatch: pytest.MonkeyPatch):
    _, recon_job = location
    with dg.instance_for_test(temp_dir=home(tmp_path), overrides=LAUNCHER) as instance:
        pool = warmed_pool(instance, recon_job, tmp_path)
        origin = serialize_value(recon_job.get_python_origin().repository_origin)
        worker_pid = pool._workers[origin].proc.pid
        monkeypatch.setattr("rag_assets.devserver.warm_pool", lambda: pool)
        runs = [make_run(instance, recon_job, tmp_path / f"out{i}.txt", sleep_s=1.0) for i in range(2)]
        started = time.monotonic()
        for run in runs:  # no workspace: the code server's path could not be taken
            instance.launch_run(run.run_id, workspace=None)
        launch_s = time.monotonic() - started
        pids = set()
        for i, run in enumerate(runs):
            done = wait_finished(instance, run.run_id)
            assert done.status == DagsterRunStatus.SUCCESS
            pid = int(done.tags[WORKER_TAG])
            assert int((tmp_path / f"out{i}.txt").read_text()) == pid
            assert (tmp_path / f"out{i}.txt.preloaded").read_text() == "True"  # the declared run imports of every job
            messages = [e.message for e in instance.all_logs(run.run_id)]
            assert f"Started process for run (pid: {pid}), forked from a warm run worker." in messages
            pids.add(pid)
        assert len(pids) == 2 and worker_pid not in pids and os.getpid() not in pids  # a child per run
        assert launch_s < 5, launch_s  # handing over is a line on a pipe and a fork, not an import of Dagster
        assert pool._workers[origin].proc.pid == worker_pid and pool._workers[origin].alive()  # it stays warm
        pool.close()


def test_a_worker_refuses_runs_once_a_source_file_changed(tmp_path: Path, location):
    code, recon_job = location
    with dg.instance_for_test(temp_dir=home(tmp_path), overrides=LAUNCHER) as instance:
        pool = warmed_pool(instance, recon_job, tmp_path)
        module = code / "warm_location.py"
        os.utime(module, ns=(module.stat().st_atime_ns, module.stat().st_mtime_ns + 10**9))
        run = make_run(instance, recon_job, tmp_path / "out.txt")
        origin = serialize_value(recon_job.get_python_origin().repository_origin)
        stale = pool._workers[origin]
        pid, why = pool.take_run(origin, None, run.run_id, serialize_value(instance.get_ref()))
        assert pid is None and "source or settings file(s) changed" in why and "warm_location.py" in why
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.NOT_STARTED  # left for the usual path
        assert WORKER_TAG not in instance.get_run_by_id(run.run_id).tags
        assert pool._workers[origin] is not stale  # a fresh worker loads the changed code for the next run
        stale.proc.wait(10)
        pool.close()


def test_terminate_and_health_check_reach_the_worker(tmp_path: Path, location, monkeypatch: pytest.MonkeyPatch):
    _, recon_job = location
    with dg.instance_for_test(temp_dir=home(tmp_path), overrides=LAUNCHER) as instance:
        pool = warmed_pool(instance, recon_job, tmp_path)
        monkeypatch.setattr("rag_assets.devserver.warm_pool", lambda: pool)
        run = make_run(instance, recon_job, tmp_path / "out.txt", sleep_s=60)
        instance.launch_run(run.run_id, workspace=None)
        deadline = time.monotonic() + 60
        while instance.get_run_by_id(run.run_id).status != DagsterRunStatus.STARTED and time.monotonic() < deadline:
            time.sleep(0.1)
        running = instance.get_run_by_id(run.run_id)
        pid = int(running.tags[WORKER_TAG])
        assert instance.run_launcher.check_run_worker_health(running).status == WorkerStatus.RUNNING
        assert instance.run_launcher.terminate(run.run_id)
        done = wait_finished(instance, run.run_id, timeout_s=60)
        assert done.status == DagsterRunStatus.CANCELED
        assert not (tmp_path / "out.txt").exists()
        deadline = time.monotonic() + 10
        while worker_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not worker_alive(pid)
        assert instance.run_launcher.check_run_worker_health(running).status == WorkerStatus.FAILED
        pool.close()


def test_project_files_are_the_location_sources_only(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    mine = tmp_path / "pkg" / "mine.py"
    mine.write_text("x = 1\n")
    site = tmp_path / "venv" / "lib" / "site-packages" / "dep.py"
    site.parent.mkdir(parents=True)
    site.write_text("")
    outside = Path(pytest.__file__)

    class Module:
        def __init__(self, path):
            self.__file__ = str(path)

    files = project_files({"mine": Module(mine), "dep": Module(site), "pytest": Module(outside), "builtin": object()}, tmp_path.resolve())
    assert list(files) == [str(mine.resolve())]
    assert changed_files(files) == []
    mine.write_text("x = 2\n")
    os.utime(mine, ns=(mine.stat().st_atime_ns, mine.stat().st_mtime_ns + 10**9))
    assert changed_files(files) == [str(mine.resolve())]
    mine.unlink()
    assert changed_files(files) == [str(mine.resolve())]


def test_settings_files_are_watched_too(tmp_path: Path):
    (tmp_path / "deploy").mkdir()
    (tmp_path / ".rag").mkdir()
    for name in ["sources.yaml", "deploy/settings.yaml", "pyproject.toml", ".rag/answers.yaml", "README.md"]:
        (tmp_path / name).write_text("x: 1\n")
    files = config_files(tmp_path)
    assert sorted(Path(f).relative_to(tmp_path).as_posix() for f in files) == ["deploy/settings.yaml", "pyproject.toml", "sources.yaml"]
    settings = tmp_path / "deploy" / "settings.yaml"
    os.utime(settings, ns=(settings.stat().st_atime_ns, settings.stat().st_mtime_ns + 10**9))
    assert changed_files(files) == [str(settings)]


def test_workers_are_on_by_default_on_linux_only(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(WARM_WORKERS_ENV, raising=False)
    assert pool_enabled("linux") and not pool_enabled("darwin") and not pool_enabled("win32")
    monkeypatch.setenv(WARM_WORKERS_ENV, "0")
    assert not pool_enabled("linux")
    monkeypatch.setenv(WARM_WORKERS_ENV, "on")
    assert pool_enabled("darwin") == hasattr(os, "fork")


def test_the_inference_jobs_declare_imports_that_leave_the_worker_safe_to_fork():
    """What `ask_job` and `sql_job` declare imports (every module is installed) and starts no thread: a worker that
    imported them still forks (it refuses to fork once it has threads)."""
    script = ("import json, threading, definitions\n"
              "from rag_assets.run_worker import declared_imports, preload\n"
              "repo = definitions.defs.get_repository_def()\n"
              "modules = {job: declared_imports(repo.get_job(job)) for job in ('ask_job', 'sql_job')}\n"
              "failed = preload([m for names in modules.values() for m in names])\n"
              "print(json.dumps({'modules': modules, 'failed': failed, 'threads': threading.active_count()}))\n")
    out = json.loads(subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    assert "openai" in out["modules"]["ask_job"] and "sqlglot" in out["modules"]["sql_job"], out
    assert out["failed"] == [] and out["threads"] == 1, out


def test_declared_imports_read_job_metadata():
    @dg.op
    def noop():
        pass

    @dg.job(metadata=run_imports("json", "wave"))
    def declares():
        noop()

    @dg.job
    def declares_nothing():
        noop()

    assert declared_imports(declares) == ["json", "wave"]
    assert declared_imports(declares_nothing) == []
    assert preload(["json", "no_such_module_for_rag_tests"]) == [
        "no_such_module_for_rag_tests (ModuleNotFoundError: No module named 'no_such_module_for_rag_tests')"]
