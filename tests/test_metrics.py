"""IR metrics against hand-computed values."""

import math

import pytest

from rag_assets.eval.metrics import evaluate, mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_perfect_and_shifted():
    rel = {"a": 1, "b": 1}
    assert ndcg_at_k(["a", "b", "c"], rel) == pytest.approx(1.0)
    # relevant at ranks 2 and 3: (1/log2(3) + 1/log2(4)) / (1 + 1/log2(3))
    expected = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "a", "b"], rel) == pytest.approx(expected)


def test_ndcg_graded_and_cutoff():
    rel = {"a": 2, "b": 1}
    assert ndcg_at_k(["b", "a"], rel) == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert ndcg_at_k(["x"] * 10 + ["a"], rel, k=10) == 0.0


def test_recall_and_mrr():
    rel = {"a": 1, "b": 1, "c": 0}
    assert recall_at_k(["a", "c", "z"], rel, 100) == pytest.approx(0.5)
    assert mrr_at_k(["z", "c", "b"], rel, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["z"] * 10 + ["a"], rel, 10) == 0.0


def test_evaluate_averages_over_judged_queries_missing_runs_score_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    scores = evaluate({"q1": ["a"]}, qrels)
    assert scores == {"ndcg_at_10": 0.5, "recall_at_100": 0.5, "mrr_at_10": 0.5}
