"""Accounting: every call's provider, model, tokens, latency, cost and the rule that chose it."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class CallRecord:
    tier: str
    candidate: str
    provider: str
    model: str
    rule: str  # why this candidate (first fit, fallback after ..., pinned by run config, ...)
    outcome: str  # ok, or the error kind (rate_limited, server_error, timeout, malformed, ...)
    attempt: int
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0


@dataclass
class Ledger:
    """Per-run totals; thread-safe. Holds no prompt, answer or key."""

    records: list[CallRecord] = field(default_factory=list)
    tokens: int = 0  # running totals, so budget checks stay O(1)
    cost_usd: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self.records.append(record)
            self.tokens += record.tokens_in + record.tokens_out
            self.cost_usd += record.cost_usd

    def totals(self) -> dict:
        ok = [r for r in self.records if r.outcome == "ok"]
        by_model: dict[str, int] = {}
        for r in ok:
            by_model[f"{r.provider}/{r.model}"] = by_model.get(f"{r.provider}/{r.model}", 0) + 1
        return {
            "llm_calls": len(ok),
            "llm_failed_attempts": len(self.records) - len(ok),
            "llm_tokens_in": sum(r.tokens_in for r in ok),
            "llm_tokens_out": sum(r.tokens_out for r in ok),
            "llm_cost_usd": round(self.cost_usd, 6),
            "llm_latency_s": round(sum(r.latency_s for r in self.records), 3),
            "llm_models": by_model,
        }

    def rows(self) -> list[dict]:
        return [asdict(r) for r in self.records]
