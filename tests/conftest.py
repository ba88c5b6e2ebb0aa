"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_bad_inputs import make_bad_inputs


@pytest.fixture
def bad_inputs_dir(tmp_path: Path) -> Path:
    """A folder `inbox` of good and bad inputs (see `fixtures_bad_inputs.make_bad_inputs`)."""
    root = tmp_path / "inbox"
    make_bad_inputs(root)
    return root


# --- pipeline fixtures -------------------------------------------------------------------------
import os  # noqa: E402
import tempfile  # noqa: E402

from lite_server import milvus_lite_server  # noqa: E402
from rag_assets.pipeline import Workspace  # noqa: E402

# Tests never write into the developer's `.rag` (answers, and the eval_results.jsonl the dev warehouse reads):
# one temporary RAG_HOME for the session; a test that needs its own sets it with monkeypatch.
os.environ["RAG_HOME"] = tempfile.mkdtemp(prefix="rag-tests-home-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the session: texts embedded by one test are cache hits in the next."""
    return tmp_path_factory.mktemp("embedding_cache")


@pytest.fixture
def workspace(tmp_path: Path, embedding_cache: Path) -> Workspace:
    """An in-process pipeline: temp folder, ephemeral Dagster instance, Milvus Lite `.db` file."""
    return Workspace(root=tmp_path / "ws", cache_dir=embedding_cache)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):
    """A real `milvus-lite server` on loopback, shared by several processes (as in `rag dev`)."""
    with milvus_lite_server(tmp_path_factory.mktemp("milvus_server")) as uri:
        yield uri


# --- end-to-end stack ----------------------------------------------------------------------------
import time  # noqa: E402

import httpx  # noqa: E402
import yaml  # noqa: E402

from rag_assets.devserver import DevStack, free_port as _free_port  # noqa: E402
from rag_assets.model_servers import default_specs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUNS = '{ runsOrError(filter: {pipelineName: "ingest"}) { ... on Runs { results { runId status } } } }'


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """A real `dagster dev` + `milvus-lite server` with the demo source ingested by the sensor (one per session)."""
    home = tmp_path_factory.mktemp("rag_home")
    sources = home / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [
        {"name": "rag-assets-docs", "kind": "markdown", "paths": [str(REPO / "docs"), str(REPO / "README.md")]},
    ]}))
    dev = DevStack(home, _free_port(), _free_port(), sources, REPO / "workspace.yaml", log_dir=home / "logs",
                   model_servers=default_specs())  # as `rag dev` runs it
    try:
        dev.start(timeout_s=240)
        deadline = time.monotonic() + 600  # the sensor adds the partition and launches the ingest run
        status = None
        while time.monotonic() < deadline:
            runs = httpx.post(f"{dev.url}/graphql", json={"query": RUNS}, timeout=10).json()["data"]["runsOrError"]["results"]
            status = runs[0]["status"] if runs else None
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(2)
        assert status == "SUCCESS", f"ingest run: {status}; logs in {home / 'logs'}"
        yield dev
    finally:
        dev.stop()




@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Dagster keeps the current defs-state storage in a context variable. A context Dagster closes only
    when it is garbage-collected (`build_*_context()` without an instance) restores a stale value at a
    random later moment, pointing at a dead instance. Start every test, and the fixtures of any scope it
    sets up, without it. (Our own code no longer builds such contexts; this guards the suite.)"""
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)


@pytest.fixture(scope="session")
def pg_server_url():
    """A throwaway PostgreSQL on a free loopback port (tests/pg_server.py), one per session."""
    from pg_server import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    """An empty database of its own for each test."""
    import uuid

    from pg_server import create_database

    return create_database(pg_server_url, f"dagster_{uuid.uuid4().hex[:12]}")
