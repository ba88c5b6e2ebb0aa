"""`DevRunCoordinator`: asks launch when submitted, at most two at a time; the rest of a burst and every
partition-writing run go through Dagster's queue."""

import threading
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRunStatus

from rag_assets import devserver
from rag_assets.devserver import DIRECT_LAUNCHES, DevRunCoordinator, launches_at_once


@dg.op
def noop() -> None:
    pass


@dg.job
def tiny():
    noop()


ORIGIN = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("rag"), "__repository__"), "tiny")


def make_run(instance: dg.DagsterInstance, tags: dict[str, str]):
    return instance.create_run_for_job(tiny, tags=tags, remote_job_origin=ORIGIN)  # a queued run needs its origin


def test_which_runs_skip_the_queue():
    assert launches_at_once({"rag/kind": "ask"}) and launches_at_once({"rag/kind": "sql"})
    assert not launches_at_once({"rag/kind": "ask", "dagster/partition": "docs|default"})
    assert not launches_at_once({"rag/kind": "ask", "rag/source": "docs"})
    assert not launches_at_once({"dagster/partition": "docs|default"}) and not launches_at_once({})


def test_a_burst_of_asks_launches_two_and_queues_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    overrides = {"run_coordinator": {"module": "rag_assets.devserver", "class": "DevRunCoordinator"}}
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=overrides) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, DevRunCoordinator)
        release, launched = threading.Event(), []

        def slow_launch(run_id, workspace):  # the real one starts the run's process; here it waits to be let go
            launched.append(run_id)
            release.wait(10)

        monkeypatch.setattr(instance, "launch_run", slow_launch)
        asks = [make_run(instance, {"rag/kind": "ask"}) for _ in range(DIRECT_LAUNCHES + 2)]
        ingest = make_run(instance, {"rag/kind": "ask", "dagster/partition": "docs|default"})
        threads = [threading.Thread(target=coordinator.submit_run, args=(SubmitRunContext(r, None),)) for r in asks[:DIRECT_LAUNCHES]]
        for t in threads:
            t.start()
        for _ in range(100):
            if len(launched) == DIRECT_LAUNCHES:
                break
            threading.Event().wait(0.05)
        busy = [coordinator.submit_run(SubmitRunContext(r, None)) for r in asks[DIRECT_LAUNCHES:]]  # both slots taken
        queued = coordinator.submit_run(SubmitRunContext(ingest, None))
        release.set()
        for t in threads:
            t.join()
        assert sorted(launched) == sorted(r.run_id for r in asks[:DIRECT_LAUNCHES])
        assert [r.status for r in busy] == [DagsterRunStatus.QUEUED] * 2 and queued.status == DagsterRunStatus.QUEUED
        after = make_run(instance, {"rag/kind": "sql"})
        coordinator.submit_run(SubmitRunContext(after, None))  # the slots are free again
        assert launched[-1] == after.run_id
    assert devserver._direct_launches.acquire(blocking=False)  # every slot given back
    devserver._direct_launches.release()
