"""Every shipped variant on SciFact (test split, whole corpus), scored by the `evaluation` asset itself.

The variants of an experiment file (default: `experiments/demo.yaml`) plus, with `--ranker`, a variant that
fuses with the trained ranker (the `ranker_model` asset, fitted on SciFact's train split first). Each variant
is ingested into its own storage names in ONE workspace (the isolation the platform promises) and scored by
materializing `evaluation[scifact|<variant>]`: nDCG@10, Recall@100, MRR@10, p50 latency of one search.
Embeddings are cached per (model, text) under `--cache-dir` and reused across runs of this script.
Prints one JSON object; each variant's line goes to stderr as it finishes.

    python bench/variants_scifact.py [--experiment experiments/demo.yaml] [--ranker] [--only a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, require_scifact  # noqa: E402

DEFAULT_FIGURE = 0.7168  # the default's SciFact nDCG@10 floor (docs/benchmarks.md)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experiment", default=str(Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"))
    parser.add_argument("--ranker", action="store_true", help="also train ranker_model and score a `fusion: ranker` variant")
    parser.add_argument("--only", default="", help="comma-separated variant names to run, in this order (default: all)")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "rag-assets" / "embeddings"))
    parser.add_argument("--home", default="", help="keep the registry and the trained ranker here (default: a temporary folder)")
    args = parser.parse_args()
    scifact = require_scifact()
    with tempfile.TemporaryDirectory(prefix="rag-variants-scifact-") as tmp:
        home = Path(args.home or tmp)
        os.environ["RAG_HOME"] = str(home)  # the variants registry and the trained ranker live here
        results = run(Path(args.experiment), scifact, home, Path(args.cache_dir), args.ranker,
                      [n for n in args.only.split(",") if n])
    best = max(results, key=lambda r: r["ndcg@10"])
    print(json.dumps({"dataset": "scifact", "split": "test", "variants": results, "best": best["variant"],
                      "best_minus_default_floor": round(best["ndcg@10"] - DEFAULT_FIGURE, 4), "machine": machine()}))


def run(experiment: Path, scifact: Path, home: Path, cache_dir: Path, with_ranker: bool, only: list[str]) -> list[dict]:
    import dagster as dg

    from rag_assets.experiments.evaluation import evaluation
    from rag_assets.experiments.spec import load_experiment
    from rag_assets.models.ranker_asset import ranker_model
    from rag_assets.pipeline import INGEST_ASSETS, Workspace
    from rag_assets.storage import ranker_path
    from rag_assets.variants import VariantSettings, register

    variants = load_experiment(experiment).variants
    if with_ranker:
        variants.append(VariantSettings(name="c256-ranker", description="Default ingestion; the trained ranker fuses.", fusion="ranker"))
    if only:  # in the order given
        by_name = {v.name: v for v in variants}
        variants = [by_name[n] for n in only if n in by_name]
    register(variants)
    ws = Workspace(root=home / "ws", cache_dir=cache_dir)  # a fresh instance and index each time (an index is not cached)
    ws.write_sources([{"name": "scifact", "kind": "beir", "paths": [str(scifact)], "schedule": "manual",
                       "max_file_mb": 16_384, "labels": str(scifact)}])
    if with_ranker and not ranker_path().is_file():  # trained once per --home
        started = time.perf_counter()
        dg.materialize([ranker_model], instance=ws.instance, resources=ws.resources(),
                       run_config={"ops": {"ranker_model": {"config": {"dataset": str(scifact)}}}})
        print(json.dumps({"ranker_model_seconds": round(time.perf_counter() - started, 1)}), file=sys.stderr, flush=True)
    results = []
    for variant in variants:
        report = ws.materialize("scifact", variant=variant.name, assets=[*INGEST_ASSETS, evaluation])
        meta = report.metadata["evaluation"]
        results.append({
            "variant": variant.name,
            **{k: meta[k] for k in ("ndcg@10", "recall@100", "mrr@10", "latency_p50_ms", "fusion_dense_weight", "embedding_model", "collection")},
            "chunks": int(report.metadata.get("chunks", {}).get("chunks", 0)),
            "embed_seconds": report.metadata.get("embeddings", {}).get("embed_seconds"),
            "ingest_and_eval_seconds": round(report.seconds, 1),
            "check_passed": report.checks.get("evaluation:ndcg_not_regressed"),
            "settings": variant.settings(),
        })
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


if __name__ == "__main__":
    main()
