"""End to end with real parts: `dagster dev` (webserver, daemon, code server) + a `milvus-lite server`,
the sensor ingesting the demo source, then `rag ask` over GraphQL: one at a time and four at once."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rag_assets import client
from rag_assets.devserver import DevStack, free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RAG = Path(sys.executable).parent / "rag"


def is_demo_source(link: str) -> bool:
    return link.startswith((REPO / "docs").as_uri()) or link == (REPO / "README.md").as_uri()


def test_rag_ask_over_graphql_returns_an_answer_with_real_sources(stack: DevStack):
    proc = subprocess.run([str(RAG), "ask", "How do I add my own source?", "--url", stack.url, "--json",
                           "--rephrasings", "1", "--max-tokens", "48", "--timeout", "300"],
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert set(out) >= {"answer", "sources", "run_id", "timings"}
    assert isinstance(out["answer"], str) and out["sources"]
    assert all(is_demo_source(s["link"]) for s in out["sources"]), out["sources"]
    assert any("sources" in s["link"] or "README" in s["link"] for s in out["sources"])
    assert "[retrieve_original]" in proc.stderr  # progress from the run's events
    assert out["timings"]["total_s"] > 0 and out["llm"]["llm_calls"] == 2  # one rewrite call, one answer call


def test_four_questions_at_once_each_get_their_own_answer(stack: DevStack):
    questions = ["What does the index asset store?", "How are chunk ids computed?",
                 "Why run a Milvus Lite server in development?", "What happens when a source is removed?"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda q: client.ask(q, url=stack.url, timeout_s=400, n_rephrasings=1, max_tokens=32), questions))
    assert [r["question"] for r in results] == questions
    assert len({r["run_id"] for r in results}) == 4
    for r in results:
        assert r["sources"] and all(is_demo_source(s["link"]) for s in r["sources"])
        assert (stack.home / "answers" / f"{r['run_id']}.json").exists()


def test_clear_errors_for_a_failed_run_a_timeout_and_no_webserver(stack: DevStack):
    with pytest.raises(client.RunFailed, match="answer_question: .*budget of 1 tokens is spent"):
        client.ask("How are chunk ids computed?", url=stack.url, timeout_s=300, llm_config={"budget_tokens": 1}, n_rephrasings=1)
    with pytest.raises(client.ClientError, match="RunConfigValidationInvalid"):
        client.ask("anything", url=stack.url, timeout_s=30, mode="no-such-mode")
    with pytest.raises(client.RunTimeout) as timeout:
        client.ask("How are chunk ids computed?", url=stack.url, timeout_s=0.5, n_rephrasings=0)
    assert timeout.value.run_id in str(timeout.value)
    with pytest.raises(client.ClientError, match="cannot reach the Dagster webserver"):
        client.ask("anything", url=f"http://127.0.0.1:{free_port()}", timeout_s=5)
