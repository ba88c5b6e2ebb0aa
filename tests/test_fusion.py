"""`auto` fusion: the confirmation gap, the calibrated weight, and the convex combination."""

from pathlib import Path

import pytest

from rag_assets.fusion import SNAP_BM25_BELOW, SNAP_DENSE_ABOVE, CalibrationStore, confirmation_gap, fuse, weight_for_gap
from rag_assets.retrieval import Hit


def hits(docs: list[str], scores: list[float] | None = None) -> list[Hit]:
    scores = scores or [1.0 - i / 100 for i in range(len(docs))]
    return [Hit(f"c-{d}", d, "s", d, "", d, "", s, False) for d, s in zip(docs, scores)]


def test_gap_favours_the_retriever_whose_top_hit_the_other_confirms():
    dense = hits(["a", "b", "c", "d"])
    bm25 = hits(["x", "y", "a", "z"])  # BM25 ranks dense's top doc 3rd; dense never finds BM25's top doc
    assert confirmation_gap(dense, bm25) > 0
    assert confirmation_gap(bm25, dense) < 0
    assert confirmation_gap(dense, dense) == 0


def test_weight_is_monotonic_and_snaps_where_one_retriever_dominates():
    gaps = [g / 10 for g in range(-50, 51)]
    weights = [weight_for_gap(g) for g in gaps]
    assert weights == sorted(weights)
    assert weights[0] == 0.0 and weights[-1] == 1.0  # BM25 alone / dense alone
    assert all(w in (0.0, 1.0) or SNAP_BM25_BELOW <= w <= SNAP_DENSE_ABOVE for w in weights)
    assert 0.5 < weight_for_gap(0) < 0.7  # the prior leans slightly to dense


def test_calibration_moves_with_evidence_and_persists(tmp_path: Path):
    path = tmp_path / "fusion" / "chunks__m.json"
    store = CalibrationStore(path)
    prior = store.calibration.dense_weight
    w = store.observe([-1.0] * 200)  # BM25 keeps being confirmed: BM25 alone
    assert w == 0.0 < prior
    reopened = CalibrationStore(path)
    assert reopened.calibration.queries == 200 and reopened.calibration.dense_weight == pytest.approx(w)
    path.write_text("not json")
    assert CalibrationStore(path).calibration.queries == 0


def test_fuse_is_a_convex_combination_of_min_max_scores():
    dense = hits(["a", "b", "c"], [0.9, 0.5, 0.1])
    bm25 = hits(["c", "d"], [12.0, 2.0])
    only_dense = fuse(dense, bm25, 5, 1.0)
    assert [h.doc_id for h in only_dense][:3] == ["a", "b", "c"]
    mixed = fuse(dense, bm25, 5, 0.5)
    scores = {h.doc_id: h.score for h in mixed}
    assert scores["c"] == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)
    assert scores["a"] == pytest.approx(0.5) and scores["d"] == pytest.approx(0.0)
