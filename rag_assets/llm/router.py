"""The router: pick the first candidate that fits, retry with backoff, fall back, enforce the budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from rag_assets.llm.ledger import CallRecord, Ledger
from rag_assets.llm.policy import Candidate, Limits, Policy
from rag_assets.llm.types import (
    AllCandidatesFailed,
    BudgetExceeded,
    CandidateError,
    Completion,
    Constraint,
    NoCandidate,
    RetryableError,
    SensitiveDataError,
    TextStream,
)


class Provider(Protocol):
    def complete(self, prompt: str, *, system: str, max_tokens: int, temperature: float, stop: list[str], timeout_s: float,
                 constraint: Constraint | None = None, stream: TextStream | None = None) -> Completion: ...


ProviderFactory = Callable[[Candidate], Provider]


class _Watched:
    """A `TextStream` that remembers whether anything was written since the last restart."""

    def __init__(self, stream: TextStream):
        self.stream, self.written = stream, False

    def write(self, text: str) -> None:
        self.written = True
        self.stream.write(text)

    def restart(self) -> None:
        if self.written:
            self.written = False
            self.stream.restart()


class Router:
    """Routes calls of a tier to candidates. One router per run (its ledger and budget are the run's)."""

    def __init__(self, policy: Policy, factory: ProviderFactory, pinned: Candidate | None = None,
                 keys: dict[str, str] | None = None, sleep: Callable[[float], None] = time.sleep):
        self.policy, self.factory, self.pinned, self.sleep = policy, factory, pinned, sleep
        self.keys = {k: v for k, v in (keys or {}).items() if v}
        self._plans: dict[tuple, list[tuple[Candidate, str]]] = {}
        self.ledger = Ledger()

    def plan(self, tier: str, limits: Limits, sensitive: bool) -> list[tuple[Candidate, str]]:
        """Candidates in the order they will be tried, each with the rule that admits it."""
        ordered = ([self.pinned] if self.pinned else []) + self.policy.candidates(tier)
        plan, rejected = [], []
        for c in ordered:
            if sensitive and c.external:
                rejected.append(f"{c.name}: external, data is sensitive")
            elif not c.available(self.keys):
                rejected.append(f"{c.name}: no credentials ({c.api_key_env or 'base_url'})")
            elif (reason := limits.reject_reason(c)) is not None:
                rejected.append(f"{c.name}: {reason}")
            elif all(c.name != p.name for p, _ in plan):
                rule = "pinned by run config" if c is self.pinned else f"tier {tier}: first fit"
                if rejected:
                    rule += " (skipped " + "; ".join(rejected) + ")"
                plan.append((c, rule))
        if not plan:
            if sensitive and any(c.external for c in ordered) and not any(not c.external for c in ordered):
                raise SensitiveDataError(f"tier {tier!r} has only external candidates and the data is sensitive")
            raise NoCandidate(f"tier {tier!r}: no candidate fits ({'; '.join(rejected)})")
        return plan

    def _check_budget(self) -> None:
        b = self.policy.budget
        if b.max_tokens is not None and self.ledger.tokens >= b.max_tokens:
            raise BudgetExceeded(f"run budget of {b.max_tokens} tokens is spent ({self.ledger.tokens} used)")
        if b.max_cost_usd is not None and self.ledger.cost_usd >= b.max_cost_usd:
            raise BudgetExceeded(f"run budget of ${b.max_cost_usd} is spent (${self.ledger.cost_usd:.4f} used)")

    def complete(self, tier: str, prompt: str, *, sensitive: bool = False, limits: Limits | None = None,
                 system: str = "", max_tokens: int = 256, temperature: float = 0.0, stop: list[str] | None = None,
                 constraint: Constraint | None = None, stream: TextStream | None = None) -> Completion:
        """One completion from the first candidate that fits and answers; raises a clear `LLMError` otherwise.

        With a `constraint`, a candidate that cannot enforce it is rejected (`CandidateError`) and the next one tried.
        With a `stream`, the text is written to it as it is generated; a failed attempt that had written some
        restarts the stream before the next attempt."""
        watched = _Watched(stream) if stream is not None else None
        limits = limits or Limits(max_tokens_out=max_tokens)
        retry = self.policy.retry
        failures: list[str] = []
        key = (tier, sensitive, limits.model_dump_json())
        if key not in self._plans:  # the plan depends only on these (credentials are fixed per run)
            self._plans[key] = self.plan(tier, limits, sensitive)
        for candidate, rule in self._plans[key]:
            if failures:
                rule = f"fallback after {failures[-1]}"
            provider = self.factory(candidate)
            for attempt in range(1, retry.max_attempts + 1):
                self._check_budget()
                started = time.perf_counter()
                optional = {**({"constraint": constraint} if constraint else {}), **({"stream": watched} if watched else {})}
                try:
                    result = provider.complete(prompt, system=system, max_tokens=max_tokens, temperature=temperature,
                                               stop=stop or [], timeout_s=retry.timeout_s, **optional)
                except RetryableError as exc:
                    if watched:
                        watched.restart()
                    self._record(tier, candidate, rule, exc.kind, attempt, time.perf_counter() - started)
                    failures.append(f"{candidate.name} {exc.kind}")
                    if attempt < retry.max_attempts:
                        backoff = min(retry.max_backoff_s, retry.backoff_s * 2 ** (attempt - 1))
                        self.sleep(min(retry.max_backoff_s, exc.retry_after_s) if exc.retry_after_s is not None else backoff)
                    continue
                except CandidateError as exc:
                    if watched:
                        watched.restart()
                    self._record(tier, candidate, rule, "rejected", attempt, time.perf_counter() - started)
                    failures.append(f"{candidate.name} rejected: {exc}")
                    break
                cost = candidate.cost(result.tokens_in, result.tokens_out)
                self.ledger.add(CallRecord(tier, candidate.name, candidate.provider, candidate.model, rule, "ok", attempt,
                                           result.tokens_in, result.tokens_out, result.latency_s, cost))
                return result
        raise AllCandidatesFailed(tier, failures)

    def _record(self, tier: str, c: Candidate, rule: str, outcome: str, attempt: int, latency: float) -> None:
        self.ledger.add(CallRecord(tier, c.name, c.provider, c.model, rule, outcome, attempt, latency_s=latency))
