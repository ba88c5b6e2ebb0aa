"""Pure pieces of multi-query RAG: prompts, parsing, reciprocal rank fusion, the result shape."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field

from rag_assets.fusion import RRF_K, reciprocal_rank_scores
from rag_assets.retrieval import Hit

SNIPPET_CHARS = 400
REPHRASINGS = 3  # rewrites per question when the run leaves it open and the rewriting model writes useful ones
CONTEXT_CHARS = 2400  # source text in the answer prompt, all sources together: about 600 tokens
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n+")
_WORD = re.compile(r"[a-z0-9]{3,}")
_STOPWORDS = frozenset("the and for are was were with that this from what which how does did can its their into about "
                       "when where who why has have had not but you your our any all".split())


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


def default_rephrasings(provider: str, model: str, bundled_model: str) -> int:
    """Rewrites to ask for when a run leaves the number open: none when they would come from the bundled local model
    (`bundled_model`), `REPHRASINGS` from any other. The bundled model's rewrites made the sources worse: on the demo
    source's 68 labeled questions, the sources' nDCG@5 was 0.766 with its 3 rewrites and 0.892 without (most of them
    describe the question, "The first line of the question is a question.", rather than restate it;
    `bench/ask_quality.py`, docs/benchmarks.md), and they cost about a second of a 2-core machine."""
    return 0 if provider == "local" and model == bundled_model else REPHRASINGS


def rephrase_prompt(question: str, n: int) -> str:
    """Completion-style (works on small base models as well as chat models)."""
    return (
        f"Rewrite the question below in {n} different ways, one per line, keeping its meaning.\n\n"
        f"Question: {question}\nRewrites:\n1."
    )


def rephrase_stops(n: int) -> list[str]:
    """Where the list of `n` rewrites ends. A small model goes on numbering ("4. ...", "5. ...") until its token limit:
    without the item after the last one as a stop, the bundled model wrote 96 tokens for almost every question."""
    return ["\n\n", "Question:", f"\n{n + 1}."]


def rewrite_question(complete, question: str, n: int, sensitive: bool) -> list[str]:
    """Up to `n` rewrites of the question from the fast tier (`complete` is `LLMResource.complete`)."""
    if n <= 0:
        return []
    out = complete(rephrase_prompt(question, n), tier="fast", sensitive=sensitive, max_tokens=32 * n, stop=rephrase_stops(n))
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


def body_of(hit: Hit) -> str:
    """A chunk's text without the title line the chunker put in front of it."""
    return hit.text.split("\n\n", 1)[-1] if hit.text.startswith(hit.title) else hit.text


def query_terms(*queries: str) -> set[str]:
    return {w for q in queries for w in _WORD.findall(q.lower()) if w not in _STOPWORDS}


def best_sentences(text: str, terms: set[str], limit: int) -> str:
    """At most `limit` characters of `text`: its sentences sharing the most words with `terms` (ties: the earlier),
    in their original order, "..." where sentences were left out. A text that fits is returned whole."""
    if len(text) <= limit:
        return text
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    ranked = sorted(range(len(sentences)), key=lambda i: (-len(terms & set(_WORD.findall(sentences[i].lower()))), i))
    kept: list[int] = []
    used = 0
    for i in ranked:
        if used + len(sentences[i]) + 1 <= limit:
            kept.append(i)
            used += len(sentences[i]) + 1
    if not kept:  # one sentence longer than the limit: its start
        return sentences[ranked[0]][: max(limit - 3, 0)].rstrip() + "..."
    kept.sort()
    parts = [sentences[kept[0]]] if kept[0] == 0 else ["...", sentences[kept[0]]]
    for before, i in zip(kept, kept[1:]):
        parts += [sentences[i]] if i == before + 1 else ["...", sentences[i]]
    return " ".join(parts + (["..."] if kept[-1] != len(sentences) - 1 else []))


def fit_sources(texts: list[str], terms: set[str], budget: int) -> list[str]:
    """Share `budget` characters among the texts: equal shares, a short text's unused share going to the longer
    ones; each longer text keeps its sentences that best match `terms` (`best_sentences`)."""
    limits: dict[int, int] = {}
    left, open_ = budget, sorted(range(len(texts)), key=lambda i: len(texts[i]))
    while open_:
        share = left // len(open_)
        i = open_[0]
        if len(texts[i]) > share:
            limits.update({j: share for j in open_})
            break
        limits[i] = len(texts[i])
        left -= len(texts[i])
        open_.pop(0)
    return [best_sentences(t, terms, limits[i]) for i, t in enumerate(texts)]


def answer_prompt(question: str, hits: list[Hit], rewrites: list[str] = (), context_chars: int = CONTEXT_CHARS) -> tuple[str, str]:
    """(system, prompt) asking for an answer grounded in numbered sources. The sources' text is cut to
    `context_chars` in all (0: whole), keeping the sentences nearest the question and its rewrites: the prompt is
    what a small local model reads before its first word (about 400 tokens a second on 2 cores)."""
    system = ("Answer the question using only the numbered sources. Cite sources as [1], [2]. "
              "If the sources do not contain the answer, say so.")
    bodies = [body_of(h) for h in hits]
    if context_chars > 0:
        bodies = fit_sources(bodies, query_terms(question, *rewrites), context_chars)
    sources = "\n\n".join(f"[{i + 1}] {h.title}\n{body}" for i, (h, body) in enumerate(zip(hits, bodies)))
    return system, f"Sources:\n{sources}\n\nQuestion: {question}\nAnswer:"


def answer_stops(n_sources: int) -> list[str]:
    """Where the answer ends: a new question, or a source numbered past the last one given. A small model that has
    answered tends to go on writing "[6] <title> ..." in the sources' format: a source it invents, never an answer."""
    return ["\nQuestion:", "\nSources:", f"[{n_sources + 1}]"]


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
        return cls(hit.link, hit.title, body_of(hit)[:SNIPPET_CHARS], round(hit.score, 6), hit.source, hit.chunk_id)


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
