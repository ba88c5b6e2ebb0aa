"""Client-side fusion of dense and BM25 candidate lists (the `auto` hybrid)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag_assets.retrieval import Hit


@dataclass(frozen=True)
class FusionParams:
    dense_weight: float = 0.7


def _minmax(hits: list["Hit"]) -> dict[str, float]:
    if not hits:
        return {}
    scores = [h.score for h in hits]
    lo, hi = min(scores), max(scores)
    if hi == lo:
        return {h.chunk_id: 1.0 for h in hits}
    return {h.chunk_id: (h.score - lo) / (hi - lo) for h in hits}


def fuse(dense: list["Hit"], bm25: list["Hit"], k: int, params: FusionParams) -> list["Hit"]:
    """Convex combination of min-max normalised scores; a chunk missing from a list scores 0 there."""
    d, b = _minmax(dense), _minmax(bm25)
    w = params.dense_weight
    by_id = {h.chunk_id: h for h in bm25} | {h.chunk_id: h for h in dense}
    fused = {cid: w * d.get(cid, 0.0) + (1 - w) * b.get(cid, 0.0) for cid in by_id}
    ranked = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
    return [replace(by_id[cid], score=score) for cid, score in ranked]
