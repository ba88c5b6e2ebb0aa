"""IR metrics as BEIR reports them (pytrec_eval definitions): nDCG@k, Recall@k, MRR@k."""

from __future__ import annotations

import math


def ndcg_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(rel / math.log2(i + 2) for i, rel in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: list[str], relevant: dict[str, int], k: int = 100) -> float:
    positives = {d for d, rel in relevant.items() if rel > 0}
    return len(positives.intersection(ranked[:k])) / len(positives) if positives else 0.0


def mrr_at_k(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if relevant.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean metrics over the judged queries (a query with no results scores 0)."""
    n = len(qrels)
    if n == 0:
        return {"ndcg_at_10": 0.0, "recall_at_100": 0.0, "mrr_at_10": 0.0}
    return {
        "ndcg_at_10": sum(ndcg_at_k(run.get(q, []), rel, 10) for q, rel in qrels.items()) / n,
        "recall_at_100": sum(recall_at_k(run.get(q, []), rel, 100) for q, rel in qrels.items()) / n,
        "mrr_at_10": sum(mrr_at_k(run.get(q, []), rel, 10) for q, rel in qrels.items()) / n,
    }
