"""Values and errors shared by providers, the router and the resource."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Constraint:
    """What a completion may look like, for providers that can enforce it while decoding.

    `grammar`: a llama.cpp GBNF grammar over the completion's text (the local model; an OpenAI-compatible
    llama.cpp server on the completions API). `json_schema`: a JSON schema the answer must be an instance of
    (OpenAI structured outputs, Gemini response schema; llama.cpp converts it to a grammar). A provider uses
    the first form it supports, says which in `Completion.constrained_by`, and raises `CandidateError` when
    it supports neither, so the router falls back to a candidate that does.
    """

    grammar: str = ""
    json_schema: dict | None = None
    name: str = "answer"  # the schema's name where a provider wants one (OpenAI)

    def __post_init__(self) -> None:
        if not self.grammar and not self.json_schema:
            raise ValueError("a constraint needs a grammar or a JSON schema")


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    provider: str
    model: str
    constrained_by: str = ""  # "", "grammar" or "json_schema": the form of the constraint the provider enforced


class TextStream(Protocol):
    """Where a streamed completion's text goes as it is generated (e.g. the answer op's run log).

    `write` gets each new piece in order; `restart` says that what was written is void because the call failed
    after it began and a retry or another candidate starts over. The returned `Completion` holds the whole text."""

    def write(self, text: str) -> None: ...

    def restart(self) -> None: ...


class LLMError(Exception):
    """Base class of every LLM failure the router handles."""


class RetryableError(LLMError):
    """429, 5xx, timeouts, connection errors, malformed output: retry with backoff, then fall back."""

    def __init__(self, message: str, kind: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s


class CandidateError(LLMError):
    """Not worth retrying on this candidate (auth, bad request, model missing): fall back at once."""


class BudgetExceeded(LLMError):
    """The run's token or cost budget is spent: no further calls."""


class SensitiveDataError(LLMError):
    """Sensitive data would have gone to an external provider."""


class NoCandidate(LLMError):
    """No candidate of the tier fits the call's limits, sensitivity and available credentials."""


@dataclass
class AllCandidatesFailed(LLMError):
    tier: str
    attempts: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"every candidate of tier {self.tier!r} failed: " + "; ".join(self.attempts)
