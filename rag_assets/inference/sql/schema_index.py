"""The schema index: table and column descriptions of DuckDB databases in their own Milvus collection.

`schema__<embedding model>`, dense (HNSW, cosine) and BM25 over the description text, one
`database` key per DuckDB file. Row ids are content hashes, so syncing a database is a set
difference: re-indexing an unchanged database writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient

from rag_assets.fusion import RRF_K, reciprocal_rank_scores
from rag_assets.hashing import sha256_hex
from rag_assets.index_store import SyncResult, ensure_hybrid_collection, quote_literal
from rag_assets.storage import schema_collection_name
from rag_assets.inference.sql.schema_docs import SchemaDoc

FIELDS = ["doc_id", "table_name", "column_name", "text"]
SCHEMA_FIELDS: list[tuple[str, DataType, dict]] = [
    ("doc_id", DataType.VARCHAR, {"max_length": 64}),
    ("database", DataType.VARCHAR, {"max_length": 64}),
    ("table_name", DataType.VARCHAR, {"max_length": 1024}),
    ("column_name", DataType.VARCHAR, {"max_length": 1024}),
]
TEXT_MAX_CHARS = 8192



def database_key(path: Path | str) -> str:
    """The index key of a DuckDB file: its resolved path, hashed."""
    return sha256_hex(str(Path(path).resolve()), length=32)


@dataclass(frozen=True)
class SchemaHit:
    table: str
    column: str
    text: str
    score: float


class SchemaIndex:
    """One schema collection; `embed_documents`/`embed_queries` must be the same model."""

    def __init__(self, client: MilvusClient, name: str, dim: int, embed_documents, embed_queries):
        self.client, self.name, self.dim = client, name, dim
        self.embed_documents, self.embed_queries = embed_documents, embed_queries

    def ensure(self) -> None:
        """Create the collection if missing and load it (`open_schema_index` calls it before any sync or search)."""
        ensure_hybrid_collection(self.client, self.name, self.dim, SCHEMA_FIELDS, "database", TEXT_MAX_CHARS)

    def _ids(self, key: str) -> set[str]:
        rows = self.client.query(self.name, filter=f"database == {quote_literal(key)}", output_fields=["doc_id"], limit=16384)
        return {r["doc_id"] for r in rows}

    def sync(self, key: str, docs: list[SchemaDoc]) -> SyncResult:
        """Make the index hold exactly `docs` for the database `key` (idempotent; after `ensure`)."""
        existing = self._ids(key)
        new = [d for d in {d.doc_id: d for d in docs}.values() if d.doc_id not in existing]
        stale = sorted(existing.difference(d.doc_id for d in docs))
        if new:
            vectors = np.asarray(self.embed_documents([d.text for d in new]), dtype=np.float32)
            rows = [{"doc_id": d.doc_id, "database": key, "table_name": d.table[:1000], "column_name": d.column[:1000],
                     "text": d.text[:2000], "vector": v.tolist()} for d, v in zip(new, vectors)]
            self.client.upsert(self.name, rows)
        if stale:
            self.client.delete(self.name, ids=stale)
        if new or stale:
            self.client.flush(self.name)
        return SyncResult(inserted=len(new), deleted=len(stale), unchanged=len(docs) - len(new))

    def count(self, key: str) -> int:
        return len(self._ids(key))

    def search(self, key: str, queries: list[str], limit: int = 10) -> list[list[SchemaHit]]:
        """Per query: schema docs of the database, best first (dense and BM25 fused by reciprocal rank)."""
        if not queries:
            return []
        flt = f"database == {quote_literal(key)}"
        vectors = np.asarray(self.embed_queries(queries), dtype=np.float32)
        dense = self.client.search(self.name, data=vectors.tolist(), anns_field="vector", limit=limit, filter=flt,
                                   output_fields=FIELDS, search_params={"metric_type": "COSINE", "params": {"ef": 64}})
        bm25 = self.client.search(self.name, data=queries, anns_field="sparse", limit=limit, filter=flt,
                                  output_fields=FIELDS, search_params={"metric_type": "BM25"})
        out = []
        for d_row, b_row in zip(dense, bm25):
            b_row = sorted(b_row, key=lambda r: -abs(float(r["distance"])))  # Milvus Lite reports BM25 negated
            entities = [[r.get("entity", r) for r in ranking] for ranking in (d_row, b_row)]
            found: dict[str, dict] = {}
            for e in entities[0] + entities[1]:
                found.setdefault(e["doc_id"], e)
            scores = reciprocal_rank_scores([e["doc_id"] for e in ranking] for ranking in entities)
            ordered = sorted(scores, key=lambda i: -scores[i])[:limit]
            out.append([SchemaHit(found[i]["table_name"], found[i]["column_name"], found[i]["text"], scores[i]) for i in ordered])
        return out


def rank_tables(rankings: list[list[SchemaHit]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Tables ordered by reciprocal rank fusion of their docs' ranks over every query."""
    scores = reciprocal_rank_scores(([hit.table for hit in ranking] for ranking in rankings), k)
    return sorted(scores.items(), key=lambda kv: -kv[1])
