"""The `auto` hybrid: dense and BM25 fused with a weight calibrated on the collection's own queries.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag_assets.retrieval import Hit

# Fitted on the train splits of SciFact (abstracts), SciFact titles (single sentences) and a
# keyword-query set over SciFact (bench/fusion_corpora.py builds all three; the fit used their train splits).
INTERCEPT, SLOPE = 0.45, 3.5
# Past these weights one retriever clearly dominates on this corpus: use it alone rather than let the
# other add noise (symmetric around the prior in logit space).
SNAP_BM25_BELOW, SNAP_DENSE_ABOVE = 0.30, 0.85
PRIOR_QUERIES = 20
DEPTH = 100
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


def weight_for_gap(mean_gap: float) -> float:
    """The dense weight: a logistic curve of the mean gap, snapped to 0 or 1 where one side dominates."""
    w = 1.0 / (1.0 + math.exp(-(INTERCEPT + SLOPE * mean_gap)))
    if w < SNAP_BM25_BELOW:
        return 0.0
    if w > SNAP_DENSE_ABOVE:
        return 1.0
    return w


@dataclass
class Calibration:
    """A running mean of confirmation gaps for one collection."""

    queries: int = 0
    gap_sum: float = 0.0

    def observe(self, gaps: list[float]) -> None:
        self.queries += len(gaps)
        self.gap_sum += sum(gaps)

    @property
    def mean_gap(self) -> float:
        return self.gap_sum / (self.queries + PRIOR_QUERIES)

    @property
    def dense_weight(self) -> float:
        return weight_for_gap(self.mean_gap)


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
                return Calibration(int(data["queries"]), float(data["gap_sum"]))
            except (ValueError, KeyError, TypeError):
                pass  # a damaged file restarts the estimate from the prior
        return Calibration()

    def observe(self, gaps: list[float]) -> float:
        """Record gaps; returns the dense weight to use now."""
        with self._lock:
            self.calibration.observe(gaps)
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
                tmp.write_text(json.dumps({"queries": self.calibration.queries, "gap_sum": self.calibration.gap_sum}))
                os.replace(tmp, self.path)
            return self.calibration.dense_weight


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
