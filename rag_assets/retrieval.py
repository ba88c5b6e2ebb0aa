"""One retrieval function for evaluation and inference: dense, BM25 or hybrid over a chunk collection.

Hybrid fusion:
- `rrf`: Milvus's own `hybrid_search` with `RRFRanker`.
- `weighted`: a fixed dense weight over min-max normalised scores (the classic convex combination).
- `auto` (default): both candidate lists fetched from Milvus and fused here by `rag_assets.fusion`,
  with a dense weight calibrated on the collection's own queries (mutual confirmation, no labels),
  so the hybrid does not fall below the stronger retriever on corpora where one of them is weak.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pymilvus import AnnSearchRequest, MilvusClient, RRFRanker

from rag_assets.fusion import DEPTH, RRF_K, CalibrationStore, fuse
from rag_assets.hits import Hit
from rag_assets.index_store import OUTPUT_FIELDS, source_filter

if TYPE_CHECKING:
    from rag_assets.ranker import RankerModel

Mode = Literal["dense", "bm25", "hybrid"]
Fusion = Literal["auto", "rrf", "weighted", "ranker"]
HNSW_EF = 256
LIGHT_FIELDS = ["chunk_id", "doc_id", "text"]  # calibration: ids, and the text whose length `auto` weighs


@dataclass(frozen=True)
class RetrievalSettings:
    mode: Mode = "hybrid"
    top_k: int = 10
    fusion: Fusion = "auto"
    dense_weight: float = 0.7  # `weighted` fusion only
    rrf_k: int = RRF_K  # `rrf` fusion only
    candidates: int = DEPTH  # per retriever, before fusion


class IndexMissing(LookupError):
    """The chunk collection does not exist: nothing has been ingested with this embedding model."""


def require_collection(client: MilvusClient, collection: str) -> None:
    """Raise `IndexMissing`, saying what to do, unless `collection` exists."""
    if not client.has_collection(collection):
        raise IndexMissing(f"no index yet: Milvus has no collection {collection!r} (nothing ingested with this embedding model); "
                           "declare a source in sources.yaml and let `rag dev` ingest it, then ask again")


def _hit(raw: dict, score: float) -> Hit:
    e = raw.get("entity", raw)
    return Hit(
        chunk_id=e.get("chunk_id", raw.get("id", "")),
        doc_id=e.get("doc_id", ""),
        source=e.get("source", ""),
        title=e.get("title", ""),
        link=e.get("link", ""),
        text=e.get("text", ""),
        heading_path=e.get("heading_path", ""),
        score=float(score),
        sensitive=bool(e.get("sensitive", False)),
    )


def _bm25_score(distance: float) -> float:
    # Milvus reports BM25 relevance as a distance; Milvus Lite negates it. Relevance is its magnitude.
    return abs(float(distance))


class Retriever:
    """Searches one collection. Query vectors come from `embed_queries` (the same model as the index)."""

    def __init__(self, client: MilvusClient, collection: str, embed_queries, calibration_path: Path | None = None,
                 ranker: "RankerModel | None" = None):
        self.client, self.collection, self.embed_queries = client, collection, embed_queries
        self.ranker = ranker  # `ranker` fusion: a trained model (the `ranker_model` asset)
        self.calibration = CalibrationStore(calibration_path)
        require_collection(client, collection)
        client.load_collection(collection)  # a reopened collection starts released

    @property
    def dense_weight(self) -> float:
        """The `auto` hybrid's current dense weight for this collection."""
        return self.calibration.calibration.dense_weight

    def calibrate(self, queries: list[str], sources: list[str] | None = None, batch: int = 64) -> float:
        """Observe queries (e.g. a sample of real ones) to calibrate `auto` fusion; returns the weight."""
        flt = source_filter(sources) if sources else ""
        for start in range(0, len(queries), batch):
            part = queries[start : start + batch]
            vectors = np.asarray(self.embed_queries(part), dtype=np.float32)
            dense, bm25 = self._dense(vectors, DEPTH, flt, light=True), self._bm25(part, DEPTH, flt, light=True)
            self.calibration.observe_lists(dense, bm25)
        return self.dense_weight

    def _dense(self, vectors: np.ndarray, limit: int, flt: str, light: bool = False) -> list[list[Hit]]:
        res = self.client.search(
            self.collection, data=vectors.tolist(), anns_field="vector", limit=limit, filter=flt,
            output_fields=LIGHT_FIELDS if light else OUTPUT_FIELDS, search_params={"metric_type": "COSINE", "params": {"ef": max(HNSW_EF, limit)}},
        )
        return [[_hit(r, r["distance"]) for r in row] for row in res]

    def _bm25(self, queries: list[str], limit: int, flt: str, light: bool = False) -> list[list[Hit]]:
        res = self.client.search(
            self.collection, data=queries, anns_field="sparse", limit=limit, filter=flt,
            output_fields=LIGHT_FIELDS if light else OUTPUT_FIELDS, search_params={"metric_type": "BM25"},
        )
        hits = [[_hit(r, _bm25_score(r["distance"])) for r in row] for row in res]
        return [sorted(row, key=lambda h: -h.score) for row in hits]

    def _milvus_hybrid(self, queries: list[str], vectors: np.ndarray, s: RetrievalSettings, flt: str) -> list[list[Hit]]:
        """Milvus-side fusion (RRF) with `hybrid_search`."""
        ranker = RRFRanker(s.rrf_k)
        out = []
        for query, vec in zip(queries, vectors):  # one request pair per query
            reqs = [
                AnnSearchRequest(data=[vec.tolist()], anns_field="vector", param={"metric_type": "COSINE", "params": {"ef": HNSW_EF}}, limit=s.candidates, expr=flt or None),
                AnnSearchRequest(data=[query], anns_field="sparse", param={"metric_type": "BM25"}, limit=s.candidates, expr=flt or None),
            ]
            res = self.client.hybrid_search(self.collection, reqs, ranker=ranker, limit=s.top_k, output_fields=OUTPUT_FIELDS)
            out.append([_hit(r, r["distance"]) for r in res[0]])
        return out

    def search(self, queries: list[str], settings: RetrievalSettings = RetrievalSettings(), sources: list[str] | None = None) -> list[list[Hit]]:
        """Top-k chunks per query, best first; `sources` restricts to those sources."""
        if not queries:
            return []
        if settings.mode not in ("dense", "bm25", "hybrid"):
            raise ValueError(f"unknown retrieval mode {settings.mode!r}: dense, bm25 or hybrid")
        flt = source_filter(sources) if sources else ""
        limit = max(settings.top_k, settings.candidates) if settings.mode == "hybrid" else settings.top_k
        if settings.mode == "bm25":
            return self._bm25(queries, settings.top_k, flt)
        vectors = np.asarray(self.embed_queries(queries), dtype=np.float32)
        if settings.mode == "dense":
            return self._dense(vectors, settings.top_k, flt)
        if settings.fusion == "rrf":
            return self._milvus_hybrid(queries, vectors, settings, flt)
        dense, bm25 = self._dense(vectors, limit, flt), self._bm25(queries, limit, flt)
        if settings.fusion == "ranker":
            if self.ranker is None:
                raise ValueError("fusion 'ranker' needs a trained model: materialize the `ranker_model` asset first")
            from rag_assets.ranker import rerank

            return [rerank(self.ranker, d, b, settings.top_k, q) for q, d, b in zip(queries, dense, bm25)]
        if settings.fusion == "weighted":
            weight = settings.dense_weight
        else:
            weight = self.calibration.observe_lists(dense, bm25)
        return [fuse(d, b, settings.top_k, weight) for d, b in zip(dense, bm25)]


def rank_documents(hits: list[Hit], k: int) -> list[tuple[str, float]]:
    """Documents ranked by their best chunk (qrels judge documents; the index holds chunks)."""
    best: dict[str, float] = {}
    for hit in hits:
        if hit.doc_id not in best or hit.score > best[hit.doc_id]:
            best[hit.doc_id] = hit.score
    return sorted(best.items(), key=lambda kv: -kv[1])[:k]
