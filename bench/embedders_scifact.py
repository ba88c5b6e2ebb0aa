"""The bundled embedding models on SciFact (test split, whole corpus): nDCG@10 dense and hybrid, embedding speed.

Each model ingests SciFact through the assets (`Workspace.materialize`, the same path as `rag eval`) into its
own temporary workspace, then is scored with `rag eval`'s retrieval and metrics. Embeddings are cached by
(model, text hash) in `--cache-dir`, so the ingest's `embed_seconds` is only the texts not cached yet; the
throughput figure (`chunks_per_s`) is measured separately on a fixed sample of the chunks, uncached.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from bench.common import machine, require_scifact  # noqa: E402
from rag_assets.eval.beir import load_beir  # noqa: E402
from rag_assets.eval.metrics import evaluate  # noqa: E402
from rag_assets.eval.run import CHUNK_HITS, retrieve_run  # noqa: E402
from rag_assets.pipeline import Workspace  # noqa: E402
from rag_assets.retrieval import RetrievalSettings, Retriever  # noqa: E402
from rag_assets.embedding import bundled  # noqa: E402
from resources import EmbedderResource  # noqa: E402

SOURCE = "scifact"
SAMPLE = 256  # chunks timed for the throughput figure


def stored(ws: Workspace, asset: str) -> pl.DataFrame:
    """The source's parquet for `asset`, wherever the IO manager keeps the default variant's partition."""
    paths = sorted((ws.root / "assets" / asset).rglob(f"{SOURCE}*.parquet"))
    if not paths:
        raise FileNotFoundError(f"no {asset} parquet for {SOURCE} under {ws.root / 'assets'}")
    return pl.read_parquet(paths[0])


def throughput(model: str, texts: list[str], batch_size: int, precision: str) -> float:
    """Chunks per second embedding `texts` (the model already loaded and warm)."""
    bundled.encode(model, texts[:8], batch_size=batch_size, precision=precision)
    started = time.perf_counter()
    bundled.encode(model, texts, batch_size=batch_size, precision=precision)
    return len(texts) / (time.perf_counter() - started)


def score_model(model: str, root: Path, cache_dir: Path, work: Path, batch_size: int, precision: str) -> dict:
    data = load_beir(root, "test")
    embedder = EmbedderResource(model=model, cache_dir=str(cache_dir), batch_size=batch_size, precision=precision)
    ws = Workspace(root=work / model, cache_dir=cache_dir)
    ws.write_sources([{"name": SOURCE, "kind": "beir", "paths": [str(root.resolve())], "schedule": "manual", "max_file_mb": 16_384}])
    report = ws.materialize(SOURCE, embedder=embedder)
    emb = report.metadata.get("embeddings", {})
    collection = report.metadata.get("index", {}).get("collection")
    docs = stored(ws, "documents").filter(pl.col("error").is_null())
    to_beir_id = dict(zip(docs["doc_id"].to_list(), docs["locator"].to_list()))
    retriever = Retriever(ws.resources(embedder)["milvus"].client(), collection, embedder.embed_queries)
    weight = retriever.calibrate(list(data.queries.values()))
    scores = {}
    for mode in ("dense", "hybrid"):
        settings = RetrievalSettings(mode=mode, top_k=CHUNK_HITS, candidates=CHUNK_HITS, fusion="auto")
        scores[mode] = evaluate(retrieve_run(retriever, data.queries, settings, to_beir_id), data.qrels)
    texts = stored(ws, "chunks")["text"].to_list()
    sample = texts[:: max(1, len(texts) // SAMPLE)][:SAMPLE]
    return {
        "model": model,
        "precision": bundled.resolve_precision(model, embedder.device, precision),
        "dimension": embedder.dimension,
        "max_tokens": embedder.max_tokens,
        "ndcg@10_dense": round(scores["dense"]["ndcg_at_10"], 4),
        "ndcg@10_hybrid": round(scores["hybrid"]["ndcg_at_10"], 4),
        "recall@100_dense": round(scores["dense"]["recall_at_100"], 4),
        "hybrid_dense_weight": round(weight, 3),
        "documents": docs.height,
        "chunks": int(report.metadata.get("chunks", {}).get("chunks", 0)),
        "embedded_now": emb.get("embedded_now"),
        "embed_seconds": emb.get("embed_seconds"),
        "ingest_seconds": round(report.seconds, 1),
        "chunks_per_s": round(throughput(model, sample, batch_size, precision), 1),
        "throughput_sample": len(sample),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(bundled.LOCAL_MODELS))
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "rag-assets" / "embeddings"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="auto", choices=bundled.PRECISIONS,
                        help="local sentence-transformers models (the cache does not tell precisions apart: give each its own --cache-dir)")
    args = parser.parse_args()
    root = require_scifact()
    results = []
    with tempfile.TemporaryDirectory(prefix="rag-embedders-") as tmp:
        for model in args.models.split(","):
            results.append(score_model(model, root, Path(args.cache_dir), Path(tmp), args.batch_size, args.precision))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"dataset": "scifact", "split": "test", "models": results, "machine": machine()}))


if __name__ == "__main__":
    main()
