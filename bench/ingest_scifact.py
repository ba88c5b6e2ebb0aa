"""Ingestion benchmark on the SciFact corpus, all measured in one run on one machine:

1. cold: the whole pipeline (documents -> chunks -> embeddings -> index) through the Dagster assets,
   empty embedding cache, model load included;
2. baseline: a bare `SentenceTransformer.encode` of the same chunk texts with the same model,
   model load included (ratio 1 / 2 is the pipeline's overhead);
3. no change: re-materialize with nothing changed (median of --repeat runs);
4. 1% changed: change 1% of the documents, re-materialize (median of --repeat runs, new docs each time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from bench.common import machine, median, require_scifact, timer  # noqa: E402
from rag_assets.pipeline import Workspace  # noqa: E402
from rag_assets.storage import names_for  # noqa: E402
from rag_assets.variants import DEFAULT_SETTINGS  # noqa: E402
from rag_assets.embedding import bundled  # noqa: E402

MODEL = "all-MiniLM-L6-v2"


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-docs", type=int, default=0, help="use only the first N documents (quick check)")
    args = parser.parse_args()
    root = require_scifact()
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        data = Path(tmp) / "scifact"
        data.mkdir()
        lines = (root / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
        if args.max_docs:
            lines = lines[: args.max_docs]
        (data / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        ws = Workspace(root=Path(tmp) / "ws", cache_dir=Path(tmp) / "cache")
        ws.write_sources([{"name": "scifact", "kind": "beir", "paths": [str(data)], "max_file_mb": 1000}])

        bundled.load_sentence_transformer.cache_clear()
        cold: list[float] = []
        with timer(cold):
            report = ws.materialize("scifact")
        texts = pl.read_parquet(ws.resources()["io_manager"].stored_path("chunks", names_for("scifact", DEFAULT_SETTINGS)))["text"].to_list()

        bundled.load_sentence_transformer.cache_clear()
        bare: list[float] = []
        with timer(bare):
            model = bundled.load_sentence_transformer(MODEL, "auto")
            model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)

        unchanged: list[float] = []
        for _ in range(args.repeat):
            with timer(unchanged):
                again = ws.materialize("scifact")
            assert again.metadata["embeddings"]["embedded_now"] == 0

        changed: list[float] = []
        re_embedded = []
        for r in range(args.repeat):
            n_changed = change_documents(data / "corpus.jsonl", 0.01, r)
            with timer(changed):
                rep = ws.materialize("scifact")
            re_embedded.append(rep.metadata["embeddings"]["embedded_now"])

        result = {
            "documents": len(lines),
            "chunks": len(texts),
            "cold_pipeline_s": round(cold[0], 1),
            "cold_stage_s": {k: round(v, 1) for k, v in report.stage_seconds().items()},
            "bare_encode_s": round(bare[0], 1),
            "pipeline_vs_bare_encode": round(cold[0] / bare[0], 3),
            "unchanged_median_s": round(median(unchanged), 2),
            "unchanged_vs_cold": round(median(unchanged) / cold[0], 4),
            "changed_1pct_docs": n_changed,
            "changed_1pct_re_embedded_chunks": re_embedded,
            "changed_1pct_median_s": round(median(changed), 2),
            "changed_1pct_vs_cold": round(median(changed) / cold[0], 4),
            "runs": args.repeat,
            "machine": machine(),
        }
        print(json.dumps(result))
        shutil.rmtree(ws.root, ignore_errors=True)


if __name__ == "__main__":
    main()
