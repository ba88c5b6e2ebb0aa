"""Sensitive sources never reach an external provider, even when one is configured as preferred.

The "external" provider is `loopback.openai_faults.OpenAIFaultServer`, a loopback server speaking
OpenAI's wire protocol that records every request; the local provider is the bundled model in-process.
"""

from pathlib import Path

import pytest
import yaml

from loopback.openai_faults import OpenAIFaultServer
from rag_assets.storage import collection_name
from rag_assets.llm.types import SensitiveDataError
from rag_assets.pipeline import Workspace
from rag_assets.retrieval import RetrievalSettings, Retriever
from resources import EmbedderResource
from resources.llm import LLMResource

pytestmark = pytest.mark.slow
SECRET = "Project Bluebird launches on 14 March with a budget of 4.2 million euros."


def ask(llm: LLMResource, retriever: Retriever, question: str, sources: list[str] | None = None) -> str:
    hits = retriever.search([question], RetrievalSettings(mode="hybrid", top_k=3), sources=sources)[0]
    context = "\n".join(f"[{i + 1}] {h.text}" for i, h in enumerate(hits))
    out = llm.complete(f"{context}\n\nQuestion: {question}\nAnswer:", tier="strong",
                       sensitive=any(h.sensitive for h in hits), max_tokens=16, stop=["\n"])
    return out.text


def test_sensitive_source_is_answered_locally_and_never_sent_out(workspace: Workspace, tmp_path: Path):
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "bluebird.md").write_text(f"# Bluebird\n\n{SECRET}\n")
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "faq.md").write_text("# FAQ\n\nThe office opens at nine in the morning.\n")
    workspace.write_sources([
        {"name": "hr", "kind": "markdown", "paths": [str(tmp_path / "hr")], "sensitive": True},
        {"name": "public", "kind": "markdown", "paths": [str(tmp_path / "public")]},
    ])
    workspace.materialize("hr")
    workspace.materialize("public")
    res = workspace.resources()
    retriever = Retriever(res["milvus"].client(), collection_name(res["embedder"].model_id), res["embedder"].embed_queries)

    with OpenAIFaultServer() as external:
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump({"tiers": {"strong": [
            {"name": "cloud", "provider": "openai", "model": "gpt-4.1", "base_url": external.base_url + "/v1", "external": True, "quality": 5},
            {"name": "local-gemma", "provider": "local", "model": "gemma-3-270m-q4_k_m", "external": False, "quality": 1},
        ]}}))
        llm = LLMResource(policy_path=str(policy), openai_api_key="sk-test")
        ask(llm, retriever, "When does Project Bluebird launch?")
        ask(llm, retriever, "When does the office open?", sources=["public"])
        pinned = LLMResource(provider="openai", base_url=external.base_url + "/v1", openai_api_key="sk-test", policy_path=str(policy))
        ask(pinned, retriever, "What is the Bluebird budget?")  # pinned external by run config: still kept local
        recorded = external.requests.snapshot()

    rows = llm.ledger.rows() + pinned.ledger.rows()
    assert [r["candidate"] for r in rows] == ["local-gemma", "cloud", "local-gemma"]
    assert "external, data is sensitive" in rows[0]["rule"]
    assert len(recorded) == 1 and "nine in the morning" in recorded[0].raw.decode()  # the recorder works
    for needle in ("Bluebird", "4.2 million", SECRET):
        assert not [r for r in recorded if r.contains(needle)]


def test_an_external_embedder_refuses_a_sensitive_source(workspace: Workspace, tmp_path: Path):
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "bluebird.md").write_text(f"# Bluebird\n\n{SECRET}\n")
    workspace.write_sources([{"name": "hr", "kind": "markdown", "paths": [str(tmp_path / "hr")], "sensitive": True}])
    with OpenAIFaultServer() as external:
        embedder = EmbedderResource(provider="openai", model="text-embedding-3-small", base_url=external.base_url + "/v1",
                                    api_key="sk-test", dimension_override=8, cache_dir=str(tmp_path / "cache"))
        with pytest.raises(SensitiveDataError, match="cannot be embedded by the external provider"):
            workspace.materialize("hr", embedder=embedder)
        assert not external.requests.containing("Bluebird")
