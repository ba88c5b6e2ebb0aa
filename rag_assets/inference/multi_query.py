"""Pure pieces of multi-query RAG: prompts, parsing, reciprocal rank fusion, the result shape."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field

from rag_assets.fusion import RRF_K, reciprocal_rank_scores
from rag_assets.retrieval import Hit

SNIPPET_CHARS = 400
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")


def sensitive_sources(sources) -> set[str] | None:
    """The sources `sources.yaml` marks sensitive now (`sources` is a `SourcesResource`); None when it cannot be
    read. The file may be newer than the index and the warehouse: a source just marked sensitive counts at once."""
    try:
        return {name for name, spec in sources.specs().items() if spec.sensitive}
    except Exception:  # missing, half-written, invalid: sensitivity unknown
        return None


def any_sensitive(hits: Iterable[Hit], sensitive: Collection[str] | None) -> bool:
    """Whether the hits carry sensitive text: flagged so in the index, or from a source in `sensitive`
    (`sensitive_sources`); when that is None (unknown), any hit at all counts as sensitive."""
    hits = list(hits)
    if sensitive is None:
        return bool(hits)
    return any(h.sensitive or h.source in sensitive for h in hits)


def rephrase_prompt(question: str, n: int) -> str:
    """Completion-style (works on small base models as well as chat models)."""
    return (
        f"Rewrite the question below in {n} different ways, one per line, keeping its meaning.\n\n"
        f"Question: {question}\nRewrites:\n1."
    )


def rewrite_question(complete, question: str, n: int, sensitive: bool) -> list[str]:
    """Up to `n` rewrites of the question from the fast tier (`complete` is `LLMResource.complete`)."""
    if n <= 0:
        return []
    out = complete(rephrase_prompt(question, n), tier="fast", sensitive=sensitive, max_tokens=32 * n, stop=["\n\n", "Question:"])
    return parse_rephrasings("1." + out.text, question, n)


def parse_rephrasings(text: str, question: str, n: int) -> list[str]:
    """Up to `n` distinct rewrites from a model's list output (numbering stripped, junk dropped)."""
    seen = {question.strip().lower()}
    out: list[str] = []
    for line in text.splitlines():
        candidate = _LIST_ITEM.sub("", line).strip().strip('"')
        if len(candidate) < 8 or candidate.lower() in seen or candidate.lower().startswith(("question:", "rewrites")):
            continue
        seen.add(candidate.lower())
        out.append(candidate)
        if len(out) == n:
            break
    return out


def rrf_fuse(rankings: list[list[Hit]], top_k: int, k: int = RRF_K) -> list[Hit]:
    """De-duplicate chunks across the queries' rankings and order them by reciprocal rank fusion."""
    hits: dict[str, Hit] = {}
    for ranking in rankings:
        for hit in ranking:
            hits.setdefault(hit.chunk_id, hit)
    scores = reciprocal_rank_scores(([h.chunk_id for h in ranking] for ranking in rankings), k)
    ordered = sorted(scores, key=lambda cid: -scores[cid])[:top_k]
    return [Hit(**{**asdict(hits[cid]), "score": scores[cid]}) for cid in ordered]


def verify_prompt(question: str, hit: Hit) -> str:
    return f"Passage: {hit.text[:1200]}\n\nDoes the passage help answer the question \"{question}\"? Answer yes or no.\nAnswer:"


def answer_prompt(question: str, hits: list[Hit]) -> tuple[str, str]:
    """(system, prompt) asking for an answer grounded in numbered sources."""
    system = ("Answer the question using only the numbered sources. Cite sources as [1], [2]. "
              "If the sources do not contain the answer, say so.")
    sources = "\n\n".join(f"[{i + 1}] {h.title}\n{h.text}" for i, h in enumerate(hits))
    return system, f"Sources:\n{sources}\n\nQuestion: {question}\nAnswer:"


@dataclass
class Source:
    link: str
    title: str
    snippet: str
    score: float
    source: str
    chunk_id: str

    @classmethod
    def from_hit(cls, hit: Hit) -> "Source":
        body = hit.text.split("\n\n", 1)[-1] if hit.text.startswith(hit.title) else hit.text
        return cls(hit.link, hit.title, body[:SNIPPET_CHARS], round(hit.score, 6), hit.source, hit.chunk_id)


@dataclass
class AskResult:
    question: str
    answer: str
    sources: list[Source]
    rephrasings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    llm: dict = field(default_factory=dict)
    run_id: str = ""

    def to_dict(self) -> dict:
        return asdict(self)
