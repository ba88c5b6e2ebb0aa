"""A recording OpenAI-compatible "external provider" for data-egress tests.

`RecordingOpenAIServer` is `OpenAIFaultServer` (every request recorded, faults scriptable) with a
responder that plays the platform's own prompts plausibly (question rewrites, relevance verdicts,
SQL for the SQL assistant, answers) and queries over what it received: requests per endpoint, per
phase of a test, and the requests that carry a given string anywhere (path, headers, body).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from .base import RecordedRequest, echo_answer
from .openai_faults import Behaviour, OpenAIFaultServer

QUESTION = re.compile(r"Question: (.*)")
VERIFY = "Does the passage help answer the question"
REWRITE = "Rewrite the question"
SQL_PRIMER = "SQL: SELECT"


def platform_responder(sql_for: Mapping[str, str] | Callable[[str], str] | None = None,
                       default_sql: str = "SELECT count(*) FROM documents") -> Callable[[str], str]:
    """Answers the platform's prompts: rewrites, "yes" to a relevance check, the SQL `sql_for(question)`
    (or `default_sql`) to the SQL assistant's prompt, and an echo of the prompt's tail to anything else."""
    lookup = sql_for if callable(sql_for) else (lambda q: (sql_for or {}).get(q, default_sql))

    def respond(prompt: str) -> str:
        questions = QUESTION.findall(prompt)
        question = questions[-1].strip() if questions else ""
        if REWRITE in prompt:
            return f" {question} (reworded)\n2. Please tell me: {question}\n3. I would like to know: {question}"
        if VERIFY in prompt:
            return "yes"
        if prompt.rstrip().endswith(SQL_PRIMER):
            return lookup(question)
        return echo_answer(prompt)

    return respond


def endpoint(request: RecordedRequest) -> str:
    """`chat`, `completions`, `embeddings` or the path: which API a request called."""
    route = request.path.split("?", 1)[0].rstrip("/")
    for name in ("chat/completions", "completions", "embeddings"):
        if route.endswith("/" + name):
            return name.split("/")[0]
    return route


def carrying(requests: Iterable[RecordedRequest], *needles: str) -> list[RecordedRequest]:
    """The requests in which any needle appears, case-insensitively, in the path, a header or the raw body."""
    lowered = [n.lower() for n in needles if n]
    found = []
    for r in requests:
        hay = "\n".join([r.path, *r.headers.values(), r.raw.decode("utf-8", "replace")]).lower()
        if any(n in hay for n in lowered):
            found.append(r)
    return found


class RecordingOpenAIServer(OpenAIFaultServer):
    """The external provider of egress tests; `mark()` then `since(mark)` isolates one phase's requests."""

    def __init__(self, script: Iterable[Behaviour] = (), *, sql_for: Mapping[str, str] | Callable[[str], str] | None = None,
                 responder: Callable[[str], str] | None = None, embedding_dim: int = 8, api_key: str | None = None) -> None:
        super().__init__(script, responder=responder or platform_responder(sql_for), embedding_dim=embedding_dim, api_key=api_key)

    def mark(self) -> int:
        return len(self.requests)

    def since(self, mark: int) -> list[RecordedRequest]:
        return self.requests.snapshot()[mark:]

    def endpoints(self, requests: Iterable[RecordedRequest] | None = None) -> Counter[str]:
        return Counter(endpoint(r) for r in (self.requests.snapshot() if requests is None else requests))

    def carrying(self, *needles: str) -> list[RecordedRequest]:
        return carrying(self.requests.snapshot(), *needles)
