"""The routing policy by execution environment: the local model first on a GPU node, an API model first on a CPU pod.

The environment is what the deployment's placement writes into each pod (`RAG_NODE_KIND`); the router is the real
one, its providers scripted (the SDKs are tested against real servers in test_llm_providers.py).
"""

import pytest

from rag_assets.deployment import NODE_KIND_ENV, k8s_config, load_settings
from rag_assets.llm.policy import Limits, Policy, load_policy
from rag_assets.llm.router import Router
from rag_assets.llm.types import Completion

KEYS = {"OPENAI_API_KEY": "sk-test", "GEMINI_API_KEY": "g-test"}


class Scripted:
    def __init__(self, name: str):
        self.name = name

    def complete(self, prompt, *, system, max_tokens, temperature, stop, timeout_s):
        return Completion(f"{self.name} says hi", 10, 2, 0.01, "x", self.name)


def answer_from(tier: str, sensitive: bool = False, limits: Limits | None = None) -> str:
    router = Router(load_policy(None), lambda c: Scripted(c.name), keys=KEYS)
    return router.complete(tier, "q", sensitive=sensitive, limits=limits).text.removesuffix(" says hi")


def pod_node_kind(workload: str) -> str:
    """What the deployment's placement sets as RAG_NODE_KIND in the pod of a workload."""
    env = k8s_config(workload, load_settings())["container_config"]["env"]
    return next(e["value"] for e in env if e["name"] == NODE_KIND_ENV)


def test_a_step_on_a_gpu_node_prefers_the_local_model(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(NODE_KIND_ENV, pod_node_kind("embedding"))
    assert pod_node_kind("embedding") == "gpu"
    assert answer_from("fast") == "local-gemma"
    assert answer_from("strong") == "openai"  # no GPU preference for answers in the shipped policy
    assert answer_from("fast", limits=Limits(min_quality=3)) == "openai-mini"  # limits still decide


def test_a_cpu_pod_prefers_an_api_model(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(NODE_KIND_ENV, pod_node_kind("inference"))
    assert pod_node_kind("inference") == "cpu"
    assert answer_from("fast") == "openai-mini"
    assert answer_from("strong") == "openai"
    assert answer_from("fast", sensitive=True) == "local-gemma"  # sensitive data never leaves, on any node


def test_unset_means_cpu_and_the_order_is_given_per_call(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(NODE_KIND_ENV, raising=False)
    policy = load_policy(None)
    assert [c.name for c in policy.candidates("fast")] == [c.name for c in policy.candidates("fast", "cpu")]
    assert [c.name for c in policy.candidates("fast", "gpu")] == ["local-gemma", "openai-mini", "gemini-flash-lite"]
    assert {c.name for c in policy.candidates("fast", "gpu")} == {c.name for c in policy.tiers["fast"]}  # reordered, not filtered


def test_preferences_must_name_candidates_of_the_tier():
    tiers = load_policy(None).model_dump()["tiers"]
    with pytest.raises(ValueError, match="node_preferences.gpu.fast"):
        Policy.model_validate({"tiers": tiers, "node_preferences": {"gpu": {"fast": ["no-such-model"]}}})
    with pytest.raises(ValueError, match="no such tier"):
        Policy.model_validate({"tiers": tiers, "node_preferences": {"cpu": {"tiny": ["openai"]}}})
