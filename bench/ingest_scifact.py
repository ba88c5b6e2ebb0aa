"""Ingestion benchmark on the SciFact corpus: the pipeline against a bare sentence-transformers `encode`, in one run.

Three measurements over the same chunk texts, each in its own fresh process (so "cold" pays the imports, the
model load and the first calls, as a user's first run does), each timed cold and then warm (the same process
again: model loaded, but a fresh workspace and an empty embedding cache, so every text is embedded again):

- baseline: a bare `SentenceTransformer.encode` (the fp32 model, batch 64, normalised) of the pipeline's chunk texts;
- baseline-bf16: the same bare `encode` under `torch.autocast(bfloat16)` (what a user could do by hand; with
  `--bf16-baseline`), to show the pipeline's own overhead when both compute in bf16;
- pipelines (`--pipelines`, each through the Dagster assets documents -> chunks -> embeddings -> index):
  `default` (all-MiniLM-L6-v2 with the default precision: bf16 autocast on a CPU with native bf16, else fp32),
  `fp32` (the same, precision fp32), `int8` (all-MiniLM-L6-v2-int8, ONNX Runtime).

Ratios are pipeline / baseline, cold to cold and warm to warm (issue 12's goal: cold <= 0.5). Then the first
pipeline's incremental runs: re-materialize with nothing changed, and with 1% of the documents changed (medians
of --repeat). Prints one JSON object; `--max-docs N` runs on the first N documents.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, median, require_scifact, timer  # noqa: E402

FP32 = "all-MiniLM-L6-v2"
PIPELINES = {"default": (FP32, "auto"), "fp32": (FP32, "fp32"), "int8": ("all-MiniLM-L6-v2-int8", "auto")}
BASELINES = ("baseline", "baseline-bf16")
SOURCE = "scifact"


def change_documents(corpus: Path, fraction: float, round_: int) -> int:
    lines = corpus.read_text(encoding="utf-8").splitlines()
    step = int(1 / fraction)
    changed = 0
    for i in range(round_ % step, len(lines), step):
        record = json.loads(lines[i])
        record["text"] += f" Revised in round {round_}."
        lines[i] = json.dumps(record)
        changed += 1
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return changed


def pipeline_run(kind: str, data: Path, work: Path):
    """Materialize the source into a fresh workspace with an empty embedding cache; (seconds, workspace, report)."""
    from rag_assets.pipeline import Workspace
    from resources import EmbedderResource

    work.mkdir(parents=True)
    ws = Workspace(root=work / "ws", cache_dir=work / "cache")
    ws.write_sources([{"name": SOURCE, "kind": "beir", "paths": [str(data)], "max_file_mb": 1000}])
    started = time.perf_counter()
    model, precision = PIPELINES[kind]
    report = ws.materialize(SOURCE, embedder=EmbedderResource(model=model, precision=precision, cache_dir=str(work / "cache")))
    return time.perf_counter() - started, ws, report


def measure_pipeline(kind: str, data: Path, work: Path, texts_out: Path, repeat: int, first: bool) -> dict:
    from rag_assets.storage import names_for
    from rag_assets.variants import DEFAULT_SETTINGS

    seconds, stages = [], []
    for run in ("cold", "warm"):
        elapsed, ws, report = pipeline_run(kind, data, work / f"{kind}-{run}")
        seconds.append(elapsed)
        stages.append({k: round(v, 1) for k, v in report.stage_seconds().items()})
    out = {"cold_s": round(seconds[0], 1), "warm_s": round(seconds[1], 1), "cold_stage_s": stages[0], "warm_stage_s": stages[1],
           "chunks": int(report.metadata["chunks"]["chunks"])}
    from rag_assets.embedding import bundled

    model, precision = PIPELINES[kind]
    out["precision"] = bundled.resolve_precision(model, "auto", precision)
    if not first:
        return out
    import polars as pl

    chunks = pl.read_parquet(ws.resources()["io_manager"].stored_path("chunks", names_for(SOURCE, DEFAULT_SETTINGS)))
    chunks.select("text").write_parquet(texts_out)
    unchanged: list[float] = []
    for _ in range(repeat):
        with timer(unchanged):
            again = ws.materialize(SOURCE)
        assert again.metadata["embeddings"]["embedded_now"] == 0
    changed: list[float] = []
    re_embedded, n_changed = [], 0
    for r in range(repeat):
        n_changed = change_documents(data / "corpus.jsonl", 0.01, r)
        with timer(changed):
            rep = ws.materialize(SOURCE)
        re_embedded.append(rep.metadata["embeddings"]["embedded_now"])
    if repeat:
        out.update({
            "unchanged_median_s": round(median(unchanged), 2),
            "unchanged_vs_cold": round(median(unchanged) / seconds[0], 4),
            "changed_1pct_docs": n_changed,
            "changed_1pct_re_embedded_chunks": re_embedded,
            "changed_1pct_median_s": round(median(changed), 2),
            "changed_1pct_vs_cold": round(median(changed) / seconds[0], 4),
        })
    return out


def measure_baseline(texts_file: Path, bf16: bool) -> dict:
    import contextlib

    import polars as pl

    texts = pl.read_parquet(texts_file)["text"].to_list()
    seconds: list[float] = []
    with timer(seconds):  # cold: import, load, encode
        import torch
        from sentence_transformers import SentenceTransformer

        from rag_assets.embedding import bundled

        model = SentenceTransformer(str(bundled.local_model_dir(FP32)), device="cpu", local_files_only=True)
        autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        with autocast():
            model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
    with timer(seconds), autocast():  # warm: the model loaded
        model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
    return {"cold_s": round(seconds[0], 1), "warm_s": round(seconds[1], 1), "texts": len(texts)}


def in_fresh_process(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3, help="runs of each incremental measurement (0: skip them)")
    parser.add_argument("--max-docs", type=int, default=0, help="use only the first N documents (quick check)")
    parser.add_argument("--pipelines", default="default,fp32", help=f"comma-separated, of {', '.join(PIPELINES)}; the first one's chunk texts are the baselines' input")
    parser.add_argument("--bf16-baseline", action="store_true", help="also time the bare encode under bf16 autocast")
    parser.add_argument("--first", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=[*BASELINES, *PIPELINES], help=argparse.SUPPRESS)  # one measurement, in this process
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure in BASELINES:
        print(json.dumps(measure_baseline(args.texts, bf16=args.measure == "baseline-bf16")))
        return
    if args.measure:
        print(json.dumps(measure_pipeline(args.measure, args.data, args.work, args.texts, args.repeat, args.first)))
        return
    pipelines = args.pipelines.split(",")
    if unknown := set(pipelines) - set(PIPELINES):
        raise SystemExit(f"unknown pipelines {sorted(unknown)}; known: {', '.join(PIPELINES)}")

    root = require_scifact()
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        lines = (root / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
        lines = lines[: args.max_docs] if args.max_docs else lines
        texts = Path(tmp) / "chunk_texts.parquet"
        results, load = {}, {}
        baselines = ["baseline", "baseline-bf16"] if args.bf16_baseline else ["baseline"]
        # the first pipeline first: it writes the chunk texts the baselines encode
        for i, kind in enumerate([pipelines[0], *baselines, *pipelines[1:]]):
            data = Path(tmp) / f"data-{kind}" / SOURCE
            data.mkdir(parents=True)
            (data / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            common = ["--texts", str(texts), "--data", str(data), "--work", str(Path(tmp) / "work"), "--repeat", str(args.repeat)]
            load[kind] = [round(os.getloadavg()[0], 1)]
            results[kind] = in_fresh_process(["--measure", kind, *common, *(["--first"] if i == 0 else [])])
            load[kind].append(round(os.getloadavg()[0], 1))
        base = results["baseline"]

        def ratio(kind: str, to: str) -> dict[str, float]:
            return {run: round(results[kind][f"{run}_s"] / results[to][f"{run}_s"], 3) for run in ("cold", "warm")}

        result = {
            "documents": len(lines),
            "chunks": base["texts"],
            **{f"{kind}_vs_bare_encode": ratio(kind, "baseline") for kind in pipelines},
            **({f"{kind}_vs_bare_bf16_encode": ratio(kind, "baseline-bf16") for kind in pipelines} if args.bf16_baseline else {}),
            **results,
            "load_average_before_after": load,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "machine": machine(),
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
