"""Unit tests of the router with scripted providers (a unit test may fake a provider; the SDKs are
tested against real servers in test_llm_providers.py)."""

import pytest

from rag_assets.llm.policy import Budget, Candidate, Limits, Policy, RetryPolicy, load_policy
from rag_assets.llm.router import Router
from rag_assets.llm.types import (AllCandidatesFailed, BudgetExceeded, CandidateError, Completion, NoCandidate,
                                  RetryableError, SensitiveDataError)


class Scripted:
    """Plays a script of outcomes: "ok", or an exception instance to raise."""

    def __init__(self, name: str, script: list):
        self.name, self.script, self.prompts = name, list(script), []

    def complete(self, prompt, *, system, max_tokens, temperature, stop, timeout_s):
        self.prompts.append(prompt)
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        return Completion(f"{self.name} says hi", 100, 20, 0.01, "x", self.name)


def cand(name, provider="openai", external=True, quality=3, latency=1.0, price=(1.0, 2.0), key="K"):
    return Candidate(name=name, provider=provider, model=name, api_key_env="" if provider == "local" else key,
                     price_in=price[0], price_out=price[1], latency_s=latency, quality=quality, external=external)


def router(candidates, scripts, **policy_kw):
    policy = Policy(tiers={"strong": candidates}, retry=RetryPolicy(max_attempts=3, backoff_s=0.1, max_backoff_s=1), **policy_kw)
    providers = {c.name: Scripted(c.name, scripts.get(c.name, [])) for c in candidates}
    sleeps = []
    r = Router(policy, lambda c: providers[c.name], keys={"K": "secret"}, sleep=sleeps.append)
    return r, providers, sleeps


def test_first_fit_and_accounting():
    r, providers, _ = router([cand("ext"), cand("local", "local", external=False, quality=1, price=(0, 0))], {})
    out = r.complete("strong", "q")
    assert out.text == "ext says hi"
    rec = r.ledger.records[0]
    assert (rec.candidate, rec.outcome, rec.tokens_in, rec.tokens_out) == ("ext", "ok", 100, 20)
    assert rec.cost_usd == pytest.approx((100 * 1.0 + 20 * 2.0) / 1e6)
    assert "first fit" in rec.rule
    assert r.ledger.totals()["llm_calls"] == 1


def test_sensitive_data_never_reaches_an_external_candidate():
    r, providers, _ = router([cand("ext"), cand("local", "local", external=False, quality=1)], {})
    out = r.complete("strong", "the secret plan", sensitive=True)
    assert out.text == "local says hi"
    assert providers["ext"].prompts == []
    assert "external, data is sensitive" in r.ledger.records[0].rule
    only_external, _, _ = router([cand("ext")], {})
    with pytest.raises(SensitiveDataError):
        only_external.complete("strong", "secret", sensitive=True)


def test_limits_select_by_cost_latency_and_quality():
    cands = [cand("pricey", price=(100, 100), quality=5, latency=5), cand("quick", quality=2, latency=0.5, price=(1, 1)),
             cand("local", "local", external=False, quality=1, latency=2, price=(0, 0))]
    r, _, _ = router(cands, {})
    assert r.complete("strong", "q", limits=Limits(max_cost_usd=0.01)).text == "quick says hi"
    assert r.complete("strong", "q", limits=Limits(max_latency_s=1.0)).text == "quick says hi"
    assert r.complete("strong", "q", limits=Limits(min_quality=4)).text == "pricey says hi"
    with pytest.raises(NoCandidate, match="quality"):
        r.complete("strong", "q", limits=Limits(min_quality=9))


def test_candidates_without_credentials_are_skipped():
    r, _, _ = router([cand("nokey", key="MISSING_KEY_ENV"), cand("local", "local", external=False, quality=1)], {})
    assert r.complete("strong", "q").text == "local says hi"
    assert "no credentials" in r.ledger.records[0].rule


def test_retry_honours_retry_after_then_falls_back():
    script = [RetryableError("429", "rate_limited", retry_after_s=0.7), RetryableError("500", "server_error"), RetryableError("t", "timeout")]
    r, providers, sleeps = router([cand("ext"), cand("backup")], {"ext": script})
    out = r.complete("strong", "q")
    assert out.text == "backup says hi"
    assert sleeps == [0.7, 0.2]  # Retry-After, then exponential backoff (0.1 * 2)
    outcomes = [(rec.candidate, rec.outcome) for rec in r.ledger.records]
    assert outcomes == [("ext", "rate_limited"), ("ext", "server_error"), ("ext", "timeout"), ("backup", "ok")]
    assert r.ledger.records[-1].rule.startswith("fallback after ext timeout")


def test_malformed_output_is_retried_and_a_rejection_falls_back_at_once():
    r, _, sleeps = router([cand("ext"), cand("b")], {"ext": [RetryableError("bad json", "malformed")]})
    assert r.complete("strong", "q").text == "ext says hi" and len(sleeps) == 1
    r2, _, sleeps2 = router([cand("ext"), cand("b")], {"ext": [CandidateError("401")]})
    assert r2.complete("strong", "q").text == "b says hi" and sleeps2 == []


def test_all_candidates_failing_is_a_clear_error():
    fail = [RetryableError("500", "server_error")] * 3
    r, _, _ = router([cand("a"), cand("b")], {"a": fail, "b": fail})
    with pytest.raises(AllCandidatesFailed, match="every candidate of tier 'strong' failed: a server_error"):
        r.complete("strong", "q")


def test_budget_stops_further_calls():
    r, _, _ = router([cand("ext")], {}, budget=Budget(max_tokens=200))
    r.complete("strong", "q")  # 120 tokens
    r.complete("strong", "q")  # 240 tokens: over the budget after this call
    with pytest.raises(BudgetExceeded, match="200 tokens"):
        r.complete("strong", "q")
    r2, _, _ = router([cand("ext", price=(1000, 1000))], {}, budget=Budget(max_cost_usd=0.1))
    r2.complete("strong", "q")
    with pytest.raises(BudgetExceeded, match=r"\$0.1"):
        r2.complete("strong", "q")


def test_pinned_candidate_goes_first_but_respects_sensitivity():
    cands = [cand("ext"), cand("local", "local", external=False, quality=1)]
    policy = Policy(tiers={"strong": cands})
    pinned = cand("pinned-gemini", provider="gemini")
    providers = {c.name: Scripted(c.name, []) for c in cands + [pinned]}
    r = Router(policy, lambda c: providers[c.name], pinned=pinned, keys={"K": "x"})
    assert r.complete("strong", "q").text == "pinned-gemini says hi"
    assert r.ledger.records[0].rule.startswith("pinned by run config")
    assert r.complete("strong", "secret", sensitive=True).text == "local says hi"


def test_default_policy_is_offline_first_without_keys(monkeypatch):
    for env in ("OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(env, raising=False)
    policy = load_policy(None)
    r = Router(policy, lambda c: Scripted(c.name, []))
    for tier in ("fast", "strong"):
        plan = r.plan(tier, Limits(), sensitive=False)
        assert [c.provider for c, _ in plan] == ["local"]
