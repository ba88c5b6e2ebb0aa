"""`rag eval` end to end on a slice of SciFact (the real command, in a subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rag_assets.eval.beir import load_beir, write_slice

pytestmark = pytest.mark.slow
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
RAG = Path(sys.executable).parent / "rag"
needs_scifact = pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").exists(), reason="../shared/data/scifact not present")


def rag_eval(*args: str, cache: Path) -> dict:
    proc = subprocess.run([str(RAG), "eval", "--dataset", str(SCIFACT), "--json", "--cache-dir", str(cache), *args],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # one JSON object, nothing else on stdout
    return json.loads(lines[0])


@needs_scifact
def test_rag_eval_json_on_a_slice(embedding_cache: Path):
    out = rag_eval("--mode", "all", "--max-queries", "25", "--max-docs", "300", cache=embedding_cache)
    assert out["queries"] == 25 and out["documents"] == 300 and out["chunks"] >= 300
    scores = out["scores"]
    for mode in ("dense", "bm25", "hybrid"):
        assert set(scores[mode]) == {"ndcg_at_10", "recall_at_100", "mrr_at_10"}
        assert 0.0 <= scores[mode]["ndcg_at_10"] <= 1.0
    # 300 documents, 25 claims: every retriever finds most evidence; the hybrid is not worse than the weaker one.
    assert scores["dense"]["ndcg_at_10"] > 0.6 and scores["bm25"]["ndcg_at_10"] > 0.6
    assert scores["hybrid"]["ndcg_at_10"] >= min(scores["dense"]["ndcg_at_10"], scores["bm25"]["ndcg_at_10"])
    assert scores["hybrid"]["recall_at_100"] >= 0.9
    assert {"documents_s", "chunks_s", "embeddings_s", "index_s", "search_hybrid_s"} <= set(out["timings"])

    single = rag_eval("--mode", "dense", "--max-queries", "25", "--max-docs", "300", cache=embedding_cache)
    assert single["ndcg_at_10"] == scores["dense"]["ndcg_at_10"]  # same slice, same index, same scores
    assert {"ndcg_at_10", "recall_at_100", "mrr_at_10"} <= set(single)


@needs_scifact
def test_slice_keeps_every_relevant_document(tmp_path: Path):
    out = write_slice(SCIFACT, tmp_path / "slice", "test", max_queries=10, max_docs=50)
    data = load_beir(out, "test")
    corpus_ids = {json.loads(line)["_id"] for line in (out / "corpus.jsonl").read_text().splitlines()}
    assert len(data.queries) == 10 and len(corpus_ids) == 50
    assert all(doc in corpus_ids for rel in data.qrels.values() for doc in rel)
