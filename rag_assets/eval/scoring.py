"""Score one collection's retrieval for one source against a labeled set: quality and per-query latency."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rag_assets.eval.metrics import evaluate
from rag_assets.retrieval import RetrievalSettings, Retriever, rank_documents

CHUNK_HITS = 400  # chunks fetched per query: enough for 100 distinct documents


@dataclass(frozen=True)
class Scores:
    metrics: dict[str, float]  # ndcg@10, recall@100, mrr@10
    latency_ms: list[float]  # one search per query, in query order
    queries: int

    def latency(self, q: float) -> float:
        return round(float(np.percentile(self.latency_ms, q)), 2) if self.latency_ms else 0.0


def score_retrieval(retriever: Retriever, queries: dict[str, str], qrels: dict[str, dict[str, int]], to_key: dict[str, str],
                    settings: RetrievalSettings, source: str) -> Scores:
    """Search each judged query alone (so latency is what one user waits), rank documents by their best
    chunk, map doc ids to the labels' keys with `to_key`, and compute BEIR's metrics.

    `auto` fusion is first calibrated on the judged queries' texts (label-free, as `rag eval` does and as
    the collection's own traffic does in production), so the score does not depend on query order."""
    settings = RetrievalSettings(mode=settings.mode, fusion=settings.fusion, dense_weight=settings.dense_weight,
                                 top_k=CHUNK_HITS, candidates=max(CHUNK_HITS, settings.candidates))
    run: dict[str, list[str]] = {}
    latency = []
    judged = [q for q in queries if q in qrels]
    if settings.mode == "hybrid" and settings.fusion == "auto":
        retriever.calibrate([queries[q] for q in judged], sources=[source])
    for qid in judged:
        started = time.perf_counter()
        hits = retriever.search([queries[qid]], settings, sources=[source])[0]
        latency.append((time.perf_counter() - started) * 1000)
        run[qid] = [to_key[d] for d, _ in rank_documents(hits, 100) if d in to_key]
    raw = evaluate(run, {q: qrels[q] for q in judged})
    metrics = {"ndcg@10": raw["ndcg_at_10"], "recall@100": raw["recall_at_100"], "mrr@10": raw["mrr_at_10"]}
    return Scores({k: round(v, 4) for k, v in metrics.items()}, latency, len(judged))
