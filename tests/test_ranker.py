"""The learned ranker: features of two candidate lists, a pairwise fit that recovers a known scorer, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag_assets.ranker import FEATURES, RankerModel, beir_id_from_link, features, fit_ranker, rerank, training_data
from rag_assets.retrieval import Hit


def hit(cid: str, score: float, text: str = "a short passage", doc: str = "") -> Hit:
    doc = doc or cid
    return Hit(cid, doc, "s", "", f"file:///c.jsonl#{doc}", text, "", score, False)


def test_features_cover_the_union_with_presence_and_normalised_scores():
    dense = [hit("a", 0.9), hit("b", 0.5), hit("c", 0.1)]
    bm25 = [hit("c", 12.0), hit("d", 3.0)]
    ids, X = features(dense, bm25, "what is a")
    assert ids == ["a", "b", "c", "d"]
    assert X.shape == (4, len(FEATURES))
    col = {name: X[:, i] for i, name in enumerate(FEATURES)}
    assert col["in_dense"].tolist() == [1, 1, 1, 0] and col["in_bm25"].tolist() == [0, 0, 1, 1]
    assert col["dense_minmax"][0] == pytest.approx(1.0, abs=1e-5) and col["dense_minmax"][3] == 0.0
    assert col["bm25_minmax"][2] == pytest.approx(1.0, abs=1e-5) and col["bm25_minmax"][0] == 0.0
    assert col["dense_rr"].tolist() == [1.0, 0.5, pytest.approx(1 / 3), 0.0]


def test_features_of_empty_lists():
    ids, X = features([], [], "q")
    assert ids == [] and X.shape == (0, len(FEATURES))


def synthetic(w_true: np.ndarray, groups: int = 200, per_group: int = 30, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(groups * per_group, len(w_true)))
    g = np.repeat(np.arange(groups), per_group)
    s = X @ w_true + 0.1 * rng.normal(size=len(X))
    y = np.zeros(len(X))
    for i in range(groups):  # the best three of each group are relevant
        rows = np.flatnonzero(g == i)
        y[rows[np.argsort(-s[rows])[:3]]] = 1
    return X, y, g


def test_fit_recovers_a_known_scoring_direction():
    w_true = np.zeros(len(FEATURES))
    w_true[0], w_true[1], w_true[5] = 2.0, -1.0, 0.5
    X, y, g = synthetic(w_true)
    model = fit_ranker(X, y, g, steps=300)
    w = np.asarray(model.weights) / np.asarray(model.scale)  # back to raw feature units
    cosine = w @ w_true / (np.linalg.norm(w) * np.linalg.norm(w_true))
    assert cosine > 0.95
    assert np.sign(w[[0, 1, 5]]).tolist() == [1, -1, 1]


def test_fit_ranks_held_out_groups_like_the_true_scorer():
    w_true = np.linspace(-1, 1, len(FEATURES))
    X, y, g = synthetic(w_true, seed=2)
    model = fit_ranker(X, y, g, steps=300)
    Xt, yt, gt = synthetic(w_true, groups=50, seed=3)
    hits_at_3 = np.mean([yt[gt == i][np.argsort(-model.score(Xt[gt == i]))[:3]].mean() for i in range(50)])
    assert hits_at_3 > 0.8  # random ordering would give 0.1


def test_fit_needs_pairs():
    with pytest.raises(ValueError, match="no pairs"):
        fit_ranker(np.ones((4, len(FEATURES))), np.zeros(4), np.array([0, 0, 1, 1]))


def test_save_load_round_trip(tmp_path):
    X, y, g = synthetic(np.ones(len(FEATURES)), groups=20, per_group=10)
    model = fit_ranker(X, y, g, steps=50, data_version="v1")
    path = tmp_path / "ranker.json"
    model.save(path)
    again = RankerModel.load(path)
    assert again.data_version == "v1" and again.feature_names == list(FEATURES)
    np.testing.assert_allclose(again.score(X), model.score(X))
    assert json.loads(path.read_text())["weights"] == model.weights


def test_load_refuses_other_features(tmp_path):
    X, y, g = synthetic(np.ones(len(FEATURES)), groups=10, per_group=10)
    path = tmp_path / "ranker.json"
    fit_ranker(X, y, g, steps=10).save(path)
    data = json.loads(path.read_text())
    data["feature_names"] = data["feature_names"][:-1] + ["something_else"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="features"):
        RankerModel.load(path)


def test_training_data_labels_chunks_by_their_document_and_rerank_follows_the_model():
    dense = [hit("a1", 0.9, doc="A"), hit("b1", 0.8, doc="B")]
    bm25 = [hit("b1", 9.0, doc="B"), hit("c1", 4.0, doc="C")]
    X, y, g = training_data([("q", dense, bm25)], [{"B": 1}])
    assert y.tolist() == [0, 1, 0] and g.tolist() == [0, 0, 0]
    assert beir_id_from_link(hit("x", 1.0, doc="a b")) == "a b"
    weights = np.zeros(len(FEATURES))
    weights[FEATURES.index("bm25_rel_top")] = 1.0  # a model that trusts BM25 alone
    model = RankerModel(weights.tolist(), [0.0] * len(FEATURES), [1.0] * len(FEATURES))
    assert [h.chunk_id for h in rerank(model, dense, bm25, 2)] == ["b1", "c1"]
