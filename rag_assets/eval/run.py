"""`rag eval`: ingest a BEIR dataset through the assets, retrieve with the shared retriever, score it."""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from rag_assets.eval.beir import check_beir, load_beir, write_slice
from rag_assets.eval.metrics import evaluate
from rag_assets.storage import collection_for, names_for
from rag_assets.variants import DEFAULT_SETTINGS
from rag_assets.pipeline import Workspace
from rag_assets.retrieval import RetrievalSettings, Retriever, rank_documents
from resources import EmbedderResource, MilvusResource

CHUNK_HITS = 400  # chunks fetched per query: enough for 100 distinct documents
QUERY_BATCH = 64


@dataclass
class EvalResult:
    dataset: str
    split: str
    scores: dict[str, dict[str, float]]  # mode -> metrics
    timings: dict[str, float]
    documents: int
    chunks: int
    queries: int
    dense_weight: float  # the `auto` hybrid's calibrated weight


def retrieve_run(retriever: Retriever, queries: dict[str, str], settings: RetrievalSettings, to_beir_id: dict[str, str]) -> dict[str, list[str]]:
    """Query id -> BEIR doc ids, best first (documents ranked by their best chunk)."""
    qids = list(queries)
    run: dict[str, list[str]] = {}
    for start in range(0, len(qids), QUERY_BATCH):
        batch = qids[start : start + QUERY_BATCH]
        for qid, hits in zip(batch, retriever.search([queries[q] for q in batch], settings)):
            run[qid] = [to_beir_id[doc_id] for doc_id, _ in rank_documents(hits, 100)]
    return run


def run_eval(
    dataset: Path,
    modes: list[str],
    split: str = "test",
    cache_dir: Path | None = None,
    max_queries: int | None = None,
    max_docs: int | None = None,
    fusion: str = "auto",
    dense_weight: float = 0.7,
    log=lambda msg: None,
) -> EvalResult:
    """Ingest `dataset` into a temporary instance and Milvus Lite file, then score each retrieval mode.

    Raises `BeirFormatError` before loading anything if `dataset` is not a BEIR folder with `split`."""
    check_beir(dataset, split)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.resolve().name)[:60] or "dataset"
    evaluated = str(dataset)  # what the results name: the dataset asked for, not the temporary slice of it
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        root = Path(tmp)
        if max_queries or max_docs:
            dataset = write_slice(dataset, root / "slice", split, max_queries or 10**9, max_docs or 10**9)
        data = load_beir(dataset, split)
        ws = Workspace(root=root / "ws", cache_dir=cache_dir)
        ws.write_sources([{"name": name, "kind": "beir", "paths": [str(dataset.resolve())], "schedule": "manual", "max_file_mb": 16_384}])
        log(f"ingesting {dataset} as source {name!r}")
        report = ws.materialize(name)
        timings = {f"{k}_s": round(v, 2) for k, v in report.stage_seconds().items()}
        timings["ingest_total_s"] = round(report.seconds, 2)

        resources = ws.resources()
        docs = pl.read_parquet(resources["io_manager"].stored_path("documents", names_for(name, DEFAULT_SETTINGS))).filter(pl.col("error").is_null())
        to_beir_id = dict(zip(docs["doc_id"].to_list(), docs["locator"].to_list()))
        embedder: EmbedderResource = resources["embedder"]
        milvus: MilvusResource = resources["milvus"]
        retriever = Retriever(milvus.client(), collection_for(DEFAULT_SETTINGS, embedder.model_id), embedder.embed_queries)
        scores = {}
        if "hybrid" in modes and fusion == "auto":
            started = time.perf_counter()
            weight = retriever.calibrate(list(data.queries.values()))
            timings["calibrate_s"] = round(time.perf_counter() - started, 2)
            log(f"auto fusion: dense weight {weight:.2f} from {len(data.queries)} queries")
        for mode in modes:
            settings = RetrievalSettings(mode=mode, top_k=CHUNK_HITS, candidates=CHUNK_HITS, fusion=fusion, dense_weight=dense_weight)
            started = time.perf_counter()
            run = retrieve_run(retriever, data.queries, settings, to_beir_id)
            timings[f"search_{mode}_s"] = round(time.perf_counter() - started, 2)
            scores[mode] = {k: round(v, 4) for k, v in evaluate(run, data.qrels).items()}
            log(f"{mode}: {scores[mode]}")
        n_chunks = int(report.metadata.get("chunks", {}).get("chunks", 0))
        result = EvalResult(dataset=evaluated, split=split, scores=scores, timings=timings, documents=docs.height,
                            chunks=n_chunks, queries=len(data.queries), dense_weight=retriever.dense_weight)
        record_eval(result)
        return result


def record_eval(result: EvalResult, path: Path | None = None) -> None:
    """Append one JSON line per mode to `$RAG_HOME/eval_results.jsonl` (the SQL warehouse's `eval_results`)."""
    import json
    from datetime import datetime, timezone

    from rag_assets.settings import rag_home

    path = path or rag_home() / "eval_results.jsonl"
    stamp = datetime.now(timezone.utc).isoformat()
    lines = [json.dumps({"dataset": result.dataset, "split": result.split, "mode": mode, "metrics": metrics, "queries": result.queries,
                         "documents": result.documents, "timestamp": stamp}) for mode, metrics in result.scores.items()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
    except OSError:
        pass  # a read-only home must not fail an evaluation
