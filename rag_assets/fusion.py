"""The `auto` hybrid: dense and BM25 fused with a weight calibrated on the collection's own queries.

Two signals, both label-free, set the dense weight (`dense_weight`):
- the *confirmation gap* (below), averaged over the collection's queries;
- the *passage length* of the hits (mean words of both lists' top ten, in log), also averaged: BM25 has
  little term-frequency evidence on short passages, and the gap alone over-trusts it there (on a
  corpus of one-sentence passages the gap-only weight fused 0.053 nDCG@10 below dense alone).

No fixed weight is right for every corpus: on long abstracts both retrievers are about equal, on
single-sentence passages BM25 is weak, on keyword-heavy text dense is. `auto` estimates which one is
stronger from *mutual confirmation*, with no labels: for each query, where does BM25 rank dense's
top document, and where does dense rank BM25's top document? The retriever whose top hit the other
confirms more often is the stronger one on this corpus. The mean gap over the queries seen so far
(shrunk toward zero by a prior of `PRIOR_QUERIES` queries) maps to the dense weight through a
logistic curve fitted on training splits only; where it says one retriever clearly dominates, that
retriever is used alone. Scores are min-max normalised per list and combined convexly. See docs/benchmarks.md for the figures.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag_assets.hits import Hit

# Fitted on the train splits of SciFact (abstracts), SciFact titles, a keyword-query set and a
# one-sentence-passage set over SciFact (bench/fusion_corpora.py builds all four; the fit used train only).
INTERCEPT, SLOPE = 0.45, 3.5
LENGTH_SLOPE, REF_LOG_WORDS = 0.2, math.log(120.0)  # dense weight rises as passages get shorter than ~120 words
# Past these weights one retriever clearly dominates on this corpus: use it alone rather than let the
# other add noise (symmetric around the prior in logit space).
SNAP_BM25_BELOW, SNAP_DENSE_ABOVE = 0.30, 0.85
PRIOR_QUERIES = 20
DEPTH = 100
HEAD = 10  # hits per list whose length counts
RRF_K = 60


def _doc_ranks(hits: list["Hit"], depth: int) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for hit in hits[:depth]:
        ranks.setdefault(hit.doc_id, len(ranks))
    return ranks


def confirmation_gap(dense: list["Hit"], bm25: list["Hit"], depth: int = DEPTH) -> float:
    """log(1 + rank of BM25's top document in dense) - log(1 + rank of dense's top document in BM25).

    Positive: dense's top hit is confirmed by BM25 more than the reverse (dense looks stronger).
    """
    rd, rb = _doc_ranks(dense, depth), _doc_ranks(bm25, depth)
    if not rd or not rb:
        return 0.0
    dense_top, bm25_top = next(iter(rd)), next(iter(rb))
    return math.log1p(rd.get(bm25_top, depth)) - math.log1p(rb.get(dense_top, depth))


def hit_log_words(dense: list["Hit"], bm25: list["Hit"], head: int = HEAD) -> float | None:
    """log of the mean word count of both lists' top `head` hits; None when the hits carry no text."""
    counts = [len(h.text.split()) for h in dense[:head] + bm25[:head] if h.text]
    return math.log(max(1.0, sum(counts) / len(counts))) if counts else None


@dataclass(frozen=True)
class Signals:
    """What one query's two lists say about the corpus: the confirmation gap and the hits' log length."""

    gap: float
    log_words: float | None


def list_signals(dense: list["Hit"], bm25: list["Hit"]) -> Signals:
    return Signals(confirmation_gap(dense, bm25), hit_log_words(dense, bm25))


def weight_for(mean_gap: float, mean_log_words: float = REF_LOG_WORDS) -> float:
    """The dense weight: a logistic curve of the mean gap and of how much shorter than `REF_LOG_WORDS`
    the passages are, snapped to 0 or 1 where one side dominates."""
    z = INTERCEPT + SLOPE * mean_gap + LENGTH_SLOPE * (REF_LOG_WORDS - mean_log_words)
    w = 1.0 / (1.0 + math.exp(-z))
    if w < SNAP_BM25_BELOW:
        return 0.0
    if w > SNAP_DENSE_ABOVE:
        return 1.0
    return w


def weight_for_gap(mean_gap: float) -> float:
    """The dense weight from the gap alone (passages of the reference length)."""
    return weight_for(mean_gap)


@dataclass
class Calibration:
    """Running means of one collection's confirmation gaps and hit lengths, each shrunk toward its prior
    (no gap, the reference length) by `PRIOR_QUERIES` queries."""

    queries: int = 0
    gap_sum: float = 0.0
    length_queries: int = 0
    log_words_sum: float = 0.0

    def observe(self, gaps: list[float]) -> None:
        self.queries += len(gaps)
        self.gap_sum += sum(gaps)

    def observe_signals(self, signals: list[Signals]) -> None:
        self.observe([s.gap for s in signals])
        lengths = [s.log_words for s in signals if s.log_words is not None]
        self.length_queries += len(lengths)
        self.log_words_sum += sum(lengths)

    @property
    def mean_gap(self) -> float:
        return self.gap_sum / (self.queries + PRIOR_QUERIES)

    @property
    def mean_log_words(self) -> float:
        return (self.log_words_sum + PRIOR_QUERIES * REF_LOG_WORDS) / (self.length_queries + PRIOR_QUERIES)

    @property
    def dense_weight(self) -> float:
        return weight_for(self.mean_gap, self.mean_log_words)


class CalibrationStore:
    """Keeps a collection's calibration in memory and, if `path` is set, in a JSON file across runs."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self._lock = threading.Lock()
        self.calibration = self._load()

    def _load(self) -> Calibration:
        if self.path and self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                return Calibration(int(data["queries"]), float(data["gap_sum"]), int(data.get("length_queries", 0)),
                                   float(data.get("log_words_sum", 0.0)))
            except (ValueError, KeyError, TypeError):
                pass  # a damaged file restarts the estimate from the prior
        return Calibration()

    def _update(self, change) -> float:
        with self._lock:
            change(self.calibration)
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
                tmp.write_text(json.dumps(asdict(self.calibration)))
                os.replace(tmp, self.path)
            return self.calibration.dense_weight

    def observe(self, gaps: list[float]) -> float:
        """Record gaps; returns the dense weight to use now."""
        return self._update(lambda c: c.observe(gaps))

    def observe_lists(self, dense: list[list["Hit"]], bm25: list[list["Hit"]]) -> float:
        """Record the signals of a batch of queries' two lists; returns the dense weight to use now."""
        signals = [list_signals(d, b) for d, b in zip(dense, bm25)]
        return self._update(lambda c: c.observe_signals(signals))


def _minmax(hits: list["Hit"], depth: int = DEPTH) -> dict[str, float]:
    """Scores scaled to [0, 1] over the top `depth` hits (the head decides the ranking); deeper hits
    score 0 plus a tiny tie-breaker that keeps their own order."""
    if not hits:
        return {}
    head = [h.score for h in hits[:depth]]
    lo, hi = min(head), max(head)
    if hi == lo:
        return {h.chunk_id: (1.0 if i < depth else 0.0) for i, h in enumerate(hits)}
    span = hi - lo
    return {h.chunk_id: max(0.0, (h.score - lo) / span) + 1e-6 * (h.score - lo) / span for h in hits}


def fuse(dense: list["Hit"], bm25: list["Hit"], k: int, dense_weight: float) -> list["Hit"]:
    """Convex combination of min-max normalised scores; a chunk missing from a list scores 0 there."""
    d, b = _minmax(dense), _minmax(bm25)
    by_id = {h.chunk_id: h for h in bm25} | {h.chunk_id: h for h in dense}
    fused = {cid: dense_weight * d.get(cid, 0.0) + (1 - dense_weight) * b.get(cid, 0.0) for cid in by_id}
    ranked = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
    return [replace(by_id[cid], score=score) for cid, score in ranked]


def reciprocal_rank_scores(rankings: Iterable[Iterable[str]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion: each key's sum of 1 / (k + rank) over the rankings (rank from 1), keys in
    first-seen order (so a stable sort by score breaks ties by first appearance)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank + 1)
    return scores

