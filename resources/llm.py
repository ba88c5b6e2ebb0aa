"""The LLM resource: one Dagster resource for every provider, switchable per run, routed by policy.

Run config switches a run to a provider and model with no code change:
`{"resources": {"llm": {"config": {"provider": "openai", "model": "gpt-4.1-mini"}}}}`.
Without `provider`, calls are routed by the policy YAML (tiers of candidates with price, latency,
quality and whether they are external); sensitive data never reaches an external candidate, not even
as a fallback when the non-external ones fail. A pinned provider is external unless `external: false`,
which a remote provider may claim only with its in-house `base_url` (else the run fails at start).
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from rag_assets.llm.ledger import Ledger
from rag_assets.llm.policy import Budget, Candidate, Limits, Policy, load_policy
from rag_assets.llm.providers import DEFAULT_MODELS, GeminiProvider, LocalProvider, OpenAIProvider
from rag_assets.llm.router import Router
from rag_assets.llm.types import Completion, Constraint, TextStream

KEY_ENVS = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}


class LLMResource(dg.ConfigurableResource):
    """Completions through a routing policy. Keys come in as `dg.EnvVar`s and never reach logs or metadata."""

    provider: str = ""  # "", local, openai, gemini: empty routes by policy; set, it pins this run to it
    model: str = ""
    base_url: str = ""  # an OpenAI-compatible or Gemini endpoint (vLLM, Ollama, llama.cpp server, a proxy)
    external: bool | None = None  # for a pinned provider; default: everything but `local` is external
    openai_api: str = "chat"  # for a pinned openai provider: "completions" for base models
    openai_api_key: str = ""
    gemini_api_key: str = ""
    policy_path: str = ""
    budget_tokens: int | None = None  # override the policy's per-run budget
    budget_usd: float | None = None
    timeout_s: float | None = None
    local_n_ctx: int = 4096
    local_model_path: str = ""  # another GGUF instead of the bundled one

    _router: Router | None = PrivateAttr(default=None)
    _providers: dict = PrivateAttr(default_factory=dict)
    _pinned_copies: dict = PrivateAttr(default_factory=dict)

    def _keys(self) -> dict[str, str]:
        return {KEY_ENVS["openai"]: self.openai_api_key, KEY_ENVS["gemini"]: self.gemini_api_key}

    def _policy(self) -> Policy:
        policy = load_policy(Path(self.policy_path) if self.policy_path else None)
        budget = Budget(
            max_tokens=self.budget_tokens if self.budget_tokens is not None else policy.budget.max_tokens,
            max_cost_usd=self.budget_usd if self.budget_usd is not None else policy.budget.max_cost_usd,
        )
        retry = policy.retry.model_copy(update={"timeout_s": self.timeout_s}) if self.timeout_s else policy.retry
        return policy.model_copy(update={"budget": budget, "retry": retry})

    def _pinned(self, policy: Policy) -> Candidate | None:
        if not self.provider:
            return None
        if self.provider not in DEFAULT_MODELS:
            raise ValueError(f"unknown provider {self.provider!r}; choose local, openai or gemini")
        model = self.model or DEFAULT_MODELS[self.provider]
        known = next((c for cs in policy.tiers.values() for c in cs if c.provider == self.provider and c.model == model), None)
        base = known.model_dump() if known else {"price_in": 0.0, "price_out": 0.0, "latency_s": 1.0, "quality": 1}
        external = self.external if self.external is not None else self.provider != "local"
        base.update(name=f"run-config:{self.provider}/{model}", provider=self.provider, model=model, external=external, api=self.openai_api,
                    base_url=self.base_url or base.get("base_url", ""), api_key_env=KEY_ENVS.get(self.provider, ""))
        return Candidate.model_validate(base)

    def provider_for(self, c: Candidate):
        """One provider (and SDK client) per candidate per resource instance, made on first use."""
        if c.name not in self._providers:
            if c.provider == "local":
                provider = LocalProvider(model=c.model, n_ctx=self.local_n_ctx, model_path=self.local_model_path)
            else:
                key = self._keys().get(c.api_key_env) or os.environ.get(c.api_key_env, "")
                provider = (OpenAIProvider(model=c.model, api_key=key, base_url=c.base_url, api=c.api) if c.provider == "openai"
                            else GeminiProvider(model=c.model, api_key=key, base_url=c.base_url))
            self._providers[c.name] = provider
        return self._providers[c.name]

    def pinned_to(self, provider: str) -> "LLMResource":
        """This resource pinned to `provider` (its default model), made once per resource instance so that
        every op of a run shares its ledger; itself when `provider` is empty or already the pinned one."""
        if not provider or provider == self.provider:
            return self
        if provider not in self._pinned_copies:
            self._pinned_copies[provider] = self.model_copy(update={"provider": provider, "model": "", "external": None})
            self._pinned_copies[provider]._router = None
            self._pinned_copies[provider]._providers = {}
            self._pinned_copies[provider]._pinned_copies = {}
        return self._pinned_copies[provider]

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._make_router()

    def _make_router(self) -> None:
        policy = self._policy()
        self._router = Router(policy, self.provider_for, pinned=self._pinned(policy), keys=self._keys())

    @property
    def router(self) -> Router:
        if self._router is None:  # used outside a Dagster run (CLI, notebooks); no init context needed, and none
            self._make_router()  # built: `build_init_resource_context()` opens an ephemeral instance closed only by GC
        return self._router

    def complete(self, prompt: str, *, tier: str = "strong", sensitive: bool = False, limits: Limits | None = None,
                 system: str = "", max_tokens: int = 256, temperature: float = 0.0, stop: list[str] | None = None,
                 constraint: Constraint | None = None, stream: TextStream | None = None) -> Completion:
        """One routed completion; `constraint` (a grammar or JSON schema) goes to candidates that can enforce it;
        `stream` gets the text as it is generated."""
        return self.router.complete(tier, prompt, sensitive=sensitive, limits=limits, system=system,
                                    max_tokens=max_tokens, temperature=temperature, stop=stop, constraint=constraint, stream=stream)

    def first_provider(self, tier: str = "strong", sensitive: bool = False, max_tokens: int = 256) -> str:
        """The provider ("local", "openai", "gemini") a `complete` call with these settings tries first."""
        return self.first_model(tier, sensitive, max_tokens)[0]

    def first_model(self, tier: str = "strong", sensitive: bool = False, max_tokens: int = 256) -> tuple[str, str]:
        """(provider, model) that a `complete` call with these settings tries first."""
        candidate = self.router.plan(tier, Limits(max_tokens_out=max_tokens), sensitive)[0][0]
        return candidate.provider, candidate.model

    @property
    def ledger(self) -> Ledger:
        return self.router.ledger

    def metadata(self) -> dict:
        """Per-run totals for materialization metadata (no prompts, answers or keys)."""
        from rag_assets.metadata import frame_table
        import polars as pl

        rows = self.ledger.rows()
        table = frame_table(pl.DataFrame(rows)) if rows else dg.MetadataValue.md("_no calls_")
        return {**self.ledger.totals(), "llm_calls_detail": table}
