"""The embedding server: a real server process holds the model; a run's embedder uses it, or falls back."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest

from rag_assets.devserver import free_port, wait_for_port
from rag_assets.embedding import bundled
from rag_assets.embedding.embedder import Embedder

pytestmark = pytest.mark.slow
MODEL = "all-MiniLM-L6-v2"
TEXTS = ["Milvus stores the chunk vectors.", "Dagster materializes the index asset.", ""]


@pytest.fixture(scope="module")
def server_url():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rag_assets.embedding.server", "--port", str(port), "--model", MODEL],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, 180, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_server_vectors_equal_in_process_vectors(server_url: str, monkeypatch: pytest.MonkeyPatch):
    health = httpx.get(f"{server_url}/health").json()
    assert health["status"] == "ok" and health["models"] == [MODEL]
    assert health["precision"] == {MODEL: bundled.resolve_precision(MODEL, "auto")}
    local = bundled.encode(MODEL, TEXTS)
    calls = []
    real_encode = bundled.encode
    monkeypatch.setattr(bundled, "encode", lambda *a, **k: calls.append(a) or real_encode(*a, **k))
    served = Embedder(model=MODEL, server_url=server_url)
    docs, queries = served.encode(TEXTS), served.embed_queries(TEXTS[:2])
    assert not calls, "the embedder loaded the model in this process although the server holds it"
    after = httpx.get(f"{server_url}/health").json()
    assert (after["requests"] - health["requests"], after["texts"] - health["texts"]) == (2, 5)
    assert docs.dtype == np.float32 and docs.shape == (3, 384)
    np.testing.assert_allclose(docs, local, atol=1e-5)
    # another batch (2 texts, not 3): under bf16 the padding changes the last digits, not the vector
    assert (queries * local[:2]).sum(axis=1).min() > 0.99999


def test_a_model_the_server_does_not_hold_and_a_dead_server_fall_back_to_in_process(server_url: str):
    other = "all-MiniLM-L6-v2-int8"
    r = httpx.post(f"{server_url}/v1/embeddings", json={"model": other, "input": ["x"]})
    assert r.status_code == 404 and other in r.json()["error"]["message"]
    np.testing.assert_allclose(Embedder(model=other, server_url=server_url).encode(TEXTS[:2]), bundled.encode(other, TEXTS[:2]), atol=1e-6)
    dead = f"http://127.0.0.1:{free_port()}"
    np.testing.assert_allclose(Embedder(model=MODEL, server_url=dead).encode(TEXTS[:2]), bundled.encode(MODEL, TEXTS[:2]), atol=1e-6)


def test_bad_requests_get_clear_errors(server_url: str):
    r = httpx.post(f"{server_url}/v1/embeddings", content=b"not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{server_url}/v1/embeddings", json={"model": MODEL, "input": [1, 2]})
    assert r.status_code == 400 and "input" in r.json()["error"]["message"]


def test_dev_stack_starts_health_checks_and_stops_its_model_servers(tmp_path):
    from rag_assets.devserver import DevStack
    from rag_assets.llm.providers import LLM_SERVER_URL_ENV
    from rag_assets.model_servers import EMBEDDER_URL_ENV, default_specs

    stack = DevStack(tmp_path, free_port(), free_port(), tmp_path / "sources.yaml", tmp_path / "workspace.yaml",
                     log_dir=tmp_path / "logs", model_servers=default_specs())
    try:
        stack.start_model_servers(timeout_s=180)
        servers = {server.spec.name: server for server in stack.servers}
        assert set(servers) == {"embedder", "llm"} and all(server.healthy() for server in servers.values())
        env = stack.environment()  # what runs inherit
        assert (env[EMBEDDER_URL_ENV], env[LLM_SERVER_URL_ENV]) == (servers["embedder"].url, servers["llm"].url)
    finally:
        stack.stop()
    assert all(server.proc.poll() is not None and not server.healthy() for server in servers.values())
