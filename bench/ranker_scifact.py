"""The trained hybrid ranker (`rag_assets/ranker.py`): fitted on SciFact's train split, scored on the test
splits of SciFact and the derived corpora of `bench/fusion_corpora.py` next to dense, BM25, the old and the
new `auto` fusion. The ranker never sees the derived corpora: they measure how it transfers.

Uses the ingested corpora and cached candidate lists of `bench/fusion_corpora.py` (same `--work`).
Writes the model to `--out` (JSON) and prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, require_scifact  # noqa: E402
from bench.fusion_corpora import CORPORA, _ingested, candidate_lists, score_methods  # noqa: E402
from rag_assets.ranker import train_ranker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default="/tmp/rag-fusion")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "rag-assets" / "embeddings"))
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--out", default="/tmp/rag-fusion/ranker.json")
    args = parser.parse_args()
    work, cache_dir, root = Path(args.work), Path(args.cache_dir), require_scifact()
    candidate_lists("abstracts", "test", work, cache_dir)  # ingests SciFact once if needed
    retriever, _ = _ingested(root, "abstracts", work / "ws" / "abstracts", cache_dir)
    model, report = train_ranker(root, retriever, split="train")
    model.save(Path(args.out))
    print("trained", json.dumps(report), file=sys.stderr, flush=True)
    results = {}
    for name in args.corpora.split(","):
        results[name] = score_methods(candidate_lists(name, "test", work, cache_dir), model)
        print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    weights = dict(zip(model.feature_names, [round(w, 3) for w in model.weights]))
    print(json.dumps({"split": "test", "ranker": {"path": args.out, "data_version": model.data_version, "report": report, "weights": weights},
                      "ndcg_at_10": results, "machine": machine()}))


if __name__ == "__main__":
    main()
