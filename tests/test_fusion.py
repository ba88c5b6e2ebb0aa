"""`auto` fusion: the confirmation gap, the hits' length, the calibrated weight, and the convex combination."""

import json
import math
from pathlib import Path

import pytest

from rag_assets.fusion import (
    REF_LOG_WORDS, SNAP_BM25_BELOW, SNAP_DENSE_ABOVE, CalibrationStore, confirmation_gap, fuse, hit_log_words, weight_for, weight_for_gap,
)
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


def texts_hits(docs: list[str], words: int) -> list[Hit]:
    return [Hit(f"c-{d}", d, "s", d, "", " ".join([d] * words), "", 1.0 - i / 100, False) for i, d in enumerate(docs)]


def test_hit_length_is_the_log_mean_word_count_and_unknown_without_text():
    assert hit_log_words(texts_hits(["a", "b"], 20), texts_hits(["c"], 20)) == pytest.approx(math.log(20))
    assert hit_log_words(hits(["a"]), []) == pytest.approx(0.0)  # one word each
    assert hit_log_words([Hit("c", "d", "s", "", "", "", "", 1.0, False)], []) is None


def test_short_passages_move_the_weight_toward_dense():
    long, short = REF_LOG_WORDS, math.log(15)
    for gap in (-0.2, 0.0, 0.1):
        assert weight_for(gap, short) >= weight_for(gap, long)
    assert weight_for(0.0, short) > weight_for(0.0, long) + 0.05  # one-sentence passages lean to dense
    assert weight_for(0.0, long) == weight_for_gap(0.0) < 1.0


def synthetic_lists(dense_better: bool, words: int, n: int = 50) -> tuple[list[list[Hit]], list[list[Hit]]]:
    """Per query: the stronger retriever ranks the answer `q` first; the weaker one ranks it 5th, and
    its own top document sits at 40 in the stronger list (the stronger top hit is confirmed)."""
    dense, bm25 = [], []
    for q in range(n):
        noise = [f"n{q}-{i}" for i in range(60)]
        strong = [f"q{q}"] + noise[:59]
        weak = noise[39:43] + [f"q{q}"] + noise[43:60]
        d, b = (strong, weak) if dense_better else (weak, strong)
        dense.append(texts_hits(d, words))
        bm25.append(texts_hits(b, words))
    return dense, bm25


@pytest.mark.parametrize("dense_better", [True, False])
def test_calibrated_weight_follows_the_stronger_retriever(dense_better: bool):
    dense, bm25 = synthetic_lists(dense_better, words=120)
    store = CalibrationStore()
    w = store.observe_lists(dense, bm25)
    assert (w > 0.7) if dense_better else (w < 0.3)
    top = [fuse(d, b, 1, w)[0].doc_id for d, b in zip(dense, bm25)]
    assert top == [f"q{q}" for q in range(len(dense))]


def test_calibration_file_from_before_length_signals_still_loads(tmp_path: Path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"queries": 40, "gap_sum": 4.0}))
    cal = CalibrationStore(path).calibration
    assert cal.queries == 40 and cal.length_queries == 0 and cal.mean_log_words == pytest.approx(REF_LOG_WORDS)
    store = CalibrationStore(path)
    store.observe_lists(*synthetic_lists(True, words=10, n=5))
    assert json.loads(path.read_text())["length_queries"] == 5
