"""A learned hybrid ranker: a linear model over per-candidate features of the dense and BM25 lists.

The candidates of a query are the union of both lists. Each gets a feature vector (`features`):
its normalised scores and ranks in each list, whether each list found it, passage and query length,
and interactions of the BM25 evidence with what says how much to trust BM25 on this query (passage
length of the hits, query length, the lists' confirmation gap). `fit_ranker` fits the weights with a
pairwise logistic loss (RankNet with a linear scorer) in numpy; the model is a JSON asset (weights,
feature names, standardisation, the version of the data it was trained on). `train_ranker` collects the
candidates of a BEIR split's queries with the `Retriever` and fits.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import numpy as np

from rag_assets.fusion import DEPTH, _minmax, confirmation_gap

if TYPE_CHECKING:
    from rag_assets.hits import Hit
    from rag_assets.retrieval import Retriever

FEATURES = (
    "dense_minmax", "bm25_minmax", "dense_rr", "bm25_rr", "in_dense", "in_bm25", "dense_cosine",
    "dense_below_top", "bm25_rel_top", "log_passage_words",
    "bm25_x_log_hit_words", "bm25_x_log_query_words", "bm25_x_gap", "dense_x_gap",
)
FORMAT = 1


def _words(text: str) -> int:
    return max(1, len(text.split()))


def features(dense: list["Hit"], bm25: list["Hit"], query: str = "", depth: int = DEPTH) -> tuple[list[str], np.ndarray]:
    """Chunk ids of the candidates (both lists' union, dense's order first) and their feature matrix
    (rows in that order, columns `FEATURES`)."""
    by_id = {h.chunk_id: h for h in bm25} | {h.chunk_id: h for h in dense}
    ids = list(dict.fromkeys([h.chunk_id for h in dense] + [h.chunk_id for h in bm25]))
    if not ids:
        return [], np.zeros((0, len(FEATURES)))
    dm, bm = _minmax(dense, depth), _minmax(bm25, depth)
    drank = {h.chunk_id: i for i, h in enumerate(dense)}
    brank = {h.chunk_id: i for i, h in enumerate(bm25)}
    dscore = {h.chunk_id: h.score for h in dense}
    bscore = {h.chunk_id: h.score for h in bm25}
    dtop = dense[0].score if dense else 0.0
    btop = bm25[0].score if bm25 and bm25[0].score > 0 else 1.0
    head = [h for h in (dense[:10] + bm25[:10])]
    log_hit_words = math.log(np.mean([_words(h.text) for h in head])) if head else 0.0
    log_query_words = math.log(_words(query)) if query else 0.0
    gap = confirmation_gap(dense, bm25, depth)
    rows = []
    for cid in ids:
        b = bm.get(cid, 0.0)
        d = dm.get(cid, 0.0)
        rows.append([
            d, b,
            1.0 / (1 + drank[cid]) if cid in drank else 0.0,
            1.0 / (1 + brank[cid]) if cid in brank else 0.0,
            float(cid in drank), float(cid in brank),
            dscore.get(cid, 0.0),
            dscore[cid] - dtop if cid in dscore else -1.0,
            bscore.get(cid, 0.0) / btop,
            math.log(_words(by_id[cid].text)),
            b * log_hit_words, b * log_query_words, b * gap, d * gap,
        ])
    return ids, np.asarray(rows, dtype=np.float64)


@dataclass
class RankerModel:
    """A linear scorer over standardised features."""

    weights: list[float]
    mean: list[float]
    scale: list[float]
    feature_names: list[str] = field(default_factory=lambda: list(FEATURES))
    data_version: str = ""
    report: dict = field(default_factory=dict)

    def score(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return ((X - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.weights)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"format": FORMAT, "feature_names": self.feature_names, "weights": self.weights, "mean": self.mean,
                                   "scale": self.scale, "data_version": self.data_version, "report": self.report}, indent=1))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "RankerModel":
        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: ranker format {data.get('format')!r}, expected {FORMAT}")
        if data["feature_names"] != list(FEATURES):
            raise ValueError(f"{path}: trained on features {data['feature_names']}, this code computes {list(FEATURES)}")
        return cls(data["weights"], data["mean"], data["scale"], data["feature_names"], data.get("data_version", ""), data.get("report", {}))


def _pairs(y: np.ndarray, groups: np.ndarray, max_negatives: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (better, worse) within each group: every positive against up to `max_negatives` others
    of lower label."""
    better, worse = [], []
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        for i in rows[y[rows] > 0]:
            lower = rows[y[rows] < y[i]]
            if len(lower) > max_negatives:
                lower = rng.choice(lower, max_negatives, replace=False)
            better += [i] * len(lower)
            worse += list(lower)
    return np.asarray(better, dtype=int), np.asarray(worse, dtype=int)


def fit_ranker(X: np.ndarray, y: np.ndarray, groups: np.ndarray, l2: float = 1e-3, steps: int = 500, lr: float = 0.5,
               max_negatives: int = 50, seed: int = 0, data_version: str = "") -> RankerModel:
    """Pairwise logistic regression: P(a ranks above b) = sigmoid(w . (x_a - x_b)) over pairs of one group
    with different labels; full-batch gradient descent on standardised features with an L2 penalty."""
    X, y, groups = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(groups)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-12] = 1.0
    Z = (X - mean) / scale
    better, worse = _pairs(y, groups, max_negatives, np.random.default_rng(seed))
    if len(better) == 0:
        raise ValueError("no pairs to learn from: every group has a single label")
    D = Z[better] - Z[worse]
    w = np.zeros(X.shape[1])
    for _ in range(steps):
        margin = D @ w
        p = 0.5 * (1 + np.tanh(-0.5 * margin))  # sigmoid(-margin), stable
        grad = -(D * p[:, None]).mean(axis=0) + l2 * w
        w -= lr * grad
    loss = float(np.mean(np.logaddexp(0, -(D @ w))))
    return RankerModel(w.tolist(), mean.tolist(), scale.tolist(), list(FEATURES), data_version, {"pairs": int(len(D)), "loss": round(loss, 5)})


def rerank(model: RankerModel, dense: list["Hit"], bm25: list["Hit"], k: int, query: str = "") -> list["Hit"]:
    """The top `k` candidates of both lists by the model's score (the hit's score becomes it)."""
    ids, X = features(dense, bm25, query)
    if not ids:
        return []
    by_id = {h.chunk_id: h for h in bm25} | {h.chunk_id: h for h in dense}
    scores = model.score(X)
    order = np.argsort(-scores, kind="stable")[:k]
    return [replace(by_id[ids[i]], score=float(scores[i])) for i in order]


def beir_id_from_link(hit: "Hit") -> str:
    """The BEIR document id of a hit from a BEIR source (its link ends in `#<quoted _id>`)."""
    return unquote(hit.link.rsplit("#", 1)[-1])


def training_data(pairs: list[tuple[str, list["Hit"], list["Hit"]]], qrels: list[dict[str, int]],
                  doc_key: Callable[["Hit"], str] = beir_id_from_link) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, groups) from each query's (text, dense hits, bm25 hits) and its judged documents."""
    Xs, ys, gs = [], [], []
    for g, ((query, dense, bm25), rel) in enumerate(zip(pairs, qrels)):
        ids, X = features(dense, bm25, query)
        by_id = {h.chunk_id: h for h in bm25} | {h.chunk_id: h for h in dense}
        Xs.append(X)
        ys.append(np.asarray([rel.get(doc_key(by_id[c]), 0) for c in ids], dtype=np.float64))
        gs.append(np.full(len(ids), g))
    return np.vstack(Xs), np.concatenate(ys), np.concatenate(gs)


def train_ranker(beir_root: Path, retriever: "Retriever", split: str = "train", doc_key: Callable[["Hit"], str] = beir_id_from_link,
                 depth: int = DEPTH, batch: int = 64) -> tuple[RankerModel, dict]:
    """Fit a ranker on a BEIR split: both candidate lists for its judged queries from `retriever`, labels
    from its qrels. The model's data version is a hash of the qrels and queries it saw."""
    from rag_assets.eval.beir import load_beir
    from rag_assets.hashing import sha256_hex

    data = load_beir(beir_root, split)
    qids = [q for q in data.queries if q in data.qrels]
    pairs = []
    for start in range(0, len(qids), batch):
        texts = [data.queries[q] for q in qids[start : start + batch]]
        vectors = np.asarray(retriever.embed_queries(texts), dtype=np.float32)
        dense, bm25 = retriever._dense(vectors, depth, ""), retriever._bm25(texts, depth, "")
        pairs += list(zip(texts, dense, bm25))
    X, y, groups = training_data(pairs, [data.qrels[q] for q in qids], doc_key)
    version = sha256_hex(json.dumps([split, sorted((q, sorted(data.qrels[q].items())) for q in qids)]).encode())[:16]
    model = fit_ranker(X, y, groups, data_version=version)
    report = {"split": split, "queries": len(qids), "candidates": int(len(y)), "positives": int((y > 0).sum()), **model.report}
    model.report = report
    return model, report
