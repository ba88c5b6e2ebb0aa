"""Switching providers is run config, not code: the same `ask_job` and ingestion assets run against
another LLM or embedding provider when the run config says so. The remote providers are loopback
servers speaking the real wire protocols (Gemini's REST shapes, OpenAI's), driven by the real SDKs."""

from pathlib import Path

import dagster as dg
import pytest

from loopback.gemini import GeminiServer
from loopback.openai_faults import OpenAIFaultServer
from rag_assets.storage import collection_name
from rag_assets.inference.ask_job import ask_job
from rag_assets.pipeline import Workspace
from resources import EmbedderResource
from resources.llm import LLMResource

pytestmark = pytest.mark.slow


@pytest.fixture()
def milvus_doc(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A source of one document about Milvus, ingested; the resources `ask_job` runs with (the default LLM policy)."""
    monkeypatch.setenv("RAG_HOME", str(tmp_path / "home"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "milvus.md").write_text("# Milvus\n\nMilvus stores dense vectors in HNSW indexes.\n")
    workspace.write_sources([{"name": "docs", "kind": "markdown", "paths": [str(tmp_path / "docs")]}])
    workspace.materialize("docs")
    return {**workspace.resources(), "llm": LLMResource(), "inference_io": dg.mem_io_manager}


def test_ask_job_switches_llm_provider_by_run_config(workspace: Workspace, milvus_doc: dict):
    resources = milvus_doc
    question = {"ops": {"retrieve_original": {"config": {"question": "Where does Milvus store vectors?", "n_rephrasings": 1, "max_tokens": 32}}}}
    with GeminiServer(api_key="g-key") as gemini:
        run_config = {**question, "resources": {"llm": {"config": {"provider": "gemini", "model": "gemini-2.5-flash",
                                                                   "base_url": gemini.base_url, "gemini_api_key": "g-key"}}}}
        result = ask_job.execute_in_process(run_config=run_config, resources=resources, instance=workspace.instance)
        out = result.output_for_node("answer_question")
        assert out["llm"]["llm_models"] == {"gemini/gemini-2.5-flash": 2}  # rephrase + answer, both on Gemini
        assert len(gemini.requests) == 2 and "HNSW" in gemini.requests[-1].raw.decode()
    local = ask_job.execute_in_process(run_config=question, resources=resources, instance=workspace.instance)
    assert set(local.output_for_node("answer_question")["llm"]["llm_models"]) == {"local/gemma-3-270m-q4_k_m"}


def test_rewrites_left_open_come_from_a_remote_model_not_from_the_bundled_one(workspace: Workspace, milvus_doc: dict):
    """A question without `n_rephrasings`: on the bundled local model the run makes one LLM call (the answer, no
    rewrites); on Gemini (a loopback server, the real SDK) it asks for 3 rewrites, then answers."""
    resources = milvus_doc
    question = {"ops": {"retrieve_original": {"config": {"question": "Where does Milvus store vectors?", "max_tokens": 16}}}}
    local = ask_job.execute_in_process(run_config=question, resources=resources, instance=workspace.instance)
    assert local.output_for_node("rephrase") == []
    assert local.output_for_node("answer_question")["llm"]["llm_models"] == {"local/gemma-3-270m-q4_k_m": 1}
    with GeminiServer(api_key="g-key") as gemini:
        run_config = {**question, "resources": {"llm": {"config": {"provider": "gemini", "model": "gemini-2.5-flash",
                                                                   "base_url": gemini.base_url, "gemini_api_key": "g-key"}}}}
        remote = ask_job.execute_in_process(run_config=run_config, resources=resources, instance=workspace.instance)
        assert remote.output_for_node("answer_question")["llm"]["llm_models"] == {"gemini/gemini-2.5-flash": 2}
        assert "in 3 different ways" in gemini.requests[0].raw.decode()


def test_another_embedding_model_writes_another_collection(workspace: Workspace, tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nAssets, not scripts.\n")
    workspace.write_sources([{"name": "docs", "kind": "markdown", "paths": [str(tmp_path / "docs")]}])
    local_report = workspace.materialize("docs")
    with OpenAIFaultServer(embedding_dim=16) as oai:
        embedder = EmbedderResource(provider="openai", model="text-embedding-3-small", base_url=oai.base_url + "/v1",
                                    api_key="sk-test", cache_dir=str(tmp_path / "cache"))
        remote_report = workspace.materialize("docs", embedder=embedder)
        assert any(r.path.endswith("/embeddings") for r in oai.requests)
    assert local_report.metadata["index"]["collection"] == collection_name("local/all-MiniLM-L6-v2")
    assert remote_report.metadata["index"]["collection"] == collection_name("openai/text-embedding-3-small")
    assert remote_report.metadata["embeddings"]["dimension"] == 16
    assert remote_report.checks["index:count_matches_chunks"] and remote_report.checks["embeddings:dimension_matches_model"]
