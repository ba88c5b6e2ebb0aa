"""The routing policy: named tiers of ordered candidates, read from a YAML file users edit.

Where the step runs may reorder a tier: `node_preferences` names, per node kind (`$RAG_NODE_KIND`, which the
deployment's placement sets in each pod: `gpu` or `cpu`, see rag_assets/deployment.py), the candidates tried first
there; the rest keep their listed order. Every other rule (credentials, limits, sensitivity) still applies."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rag_assets.deployment import NodeKind, current_node_kind

Provider = Literal["local", "openai", "gemini"]
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "llm_policy.yaml"  # the repository's, users edit it


class Candidate(BaseModel):
    """One model a tier may use, with what it costs and how good and fast it is expected to be."""

    model_config = ConfigDict(extra="forbid")

    name: str
    provider: Provider
    model: str
    base_url: str = ""
    api: Literal["chat", "completions"] = Field(default="chat", description="openai: chat turns, or completion-style for base models.")
    api_key_env: str = Field(default="", description="Environment variable holding the API key.")
    price_in: float = Field(default=0.0, ge=0, description="USD per million input tokens.")
    price_out: float = Field(default=0.0, ge=0, description="USD per million output tokens.")
    latency_s: float = Field(default=1.0, ge=0, description="Expected latency of a typical call.")
    quality: int = Field(default=1, ge=0, description="Higher is better; compared with a call's min_quality.")
    external: bool = Field(default=True, description="Data leaves the building: never used for sensitive data.")

    @model_validator(mode="after")
    def _in_house_needs_an_endpoint(self) -> "Candidate":
        """`external: false` on a remote provider must name its endpoint: without a `base_url` the SDK sends the
        data to the vendor's public API (or wherever `OPENAI_BASE_URL` points), which is never in-house."""
        if self.provider != "local" and not self.external and not self.base_url:
            raise ValueError(f"candidate {self.name!r}: external: false needs the in-house base_url; "
                             f"without one, {self.provider} calls go to the vendor's API")
        return self

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1_000_000

    def available(self, keys: Mapping[str, str] | None = None) -> bool:
        """Local models always are; remote ones need their key (given, or in the environment) or a base URL."""
        if self.provider == "local":
            return True
        key = (keys or {}).get(self.api_key_env) or (os.environ.get(self.api_key_env) if self.api_key_env else None)
        return bool(self.base_url or key)


class Limits(BaseModel):
    """What a call may spend and must deliver. None means no limit."""

    max_cost_usd: float | None = None
    max_latency_s: float | None = None
    min_quality: int | None = None
    max_tokens_in: int = 2000  # used to estimate the cost of a call before making it
    max_tokens_out: int = 256

    def reject_reason(self, c: Candidate) -> str | None:
        if self.min_quality is not None and c.quality < self.min_quality:
            return f"quality {c.quality} < {self.min_quality}"
        if self.max_latency_s is not None and c.latency_s > self.max_latency_s:
            return f"latency {c.latency_s}s > {self.max_latency_s}s"
        if self.max_cost_usd is not None and c.cost(self.max_tokens_in, self.max_tokens_out) > self.max_cost_usd:
            return f"cost > ${self.max_cost_usd}"
        return None


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1)
    backoff_s: float = Field(default=0.5, ge=0)
    max_backoff_s: float = Field(default=8.0, ge=0)
    timeout_s: float = Field(default=60.0, gt=0)


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = None
    max_cost_usd: float | None = None


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tiers: dict[str, list[Candidate]]
    retry: RetryPolicy = RetryPolicy()
    budget: Budget = Budget()
    node_preferences: dict[NodeKind, dict[str, list[str]]] = Field(
        default_factory=dict, description="Per node kind, per tier: the candidates tried first on that kind of node.")

    @model_validator(mode="after")
    def _preferences_name_candidates(self) -> "Policy":
        for kind, tiers in self.node_preferences.items():
            for tier, names in tiers.items():
                known = {c.name for c in self.tiers.get(tier, [])}
                if tier not in self.tiers or not set(names) <= known:
                    raise ValueError(f"node_preferences.{kind}.{tier}: {names} must name candidates of tier {tier!r} "
                                     f"({sorted(known) if tier in self.tiers else 'no such tier'})")
        return self

    def candidates(self, tier: str, node_kind: NodeKind | None = None) -> list[Candidate]:
        """The tier's candidates in the order to try them on this node (`node_kind`, default `$RAG_NODE_KIND`)."""
        if tier not in self.tiers:
            raise KeyError(f"unknown tier {tier!r}; the policy has {sorted(self.tiers)}")
        listed = self.tiers[tier]
        first = self.node_preferences.get(node_kind or current_node_kind(), {}).get(tier, [])
        return [c for name in first for c in listed if c.name == name] + [c for c in listed if c.name not in first]


def load_policy(path: Path | None = None) -> Policy:
    """The policy at `path`, else `$RAG_LLM_POLICY`, else `./llm_policy.yaml`, else the repository's."""
    for candidate in (path, Path(os.environ["RAG_LLM_POLICY"]) if os.environ.get("RAG_LLM_POLICY") else None, Path("llm_policy.yaml")):
        if candidate is not None and candidate.exists():
            return Policy.model_validate(yaml.safe_load(candidate.read_text(encoding="utf-8")))
    return Policy.model_validate(yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8")))
