"""Does the default hybrid hold on other kinds of corpora? dense vs BM25 vs fixed-weight vs `auto`.

Three labeled corpora built from SciFact at run time (in a temp folder, nothing copied into the repo):
- `abstracts`: SciFact as published (claims -> abstracts);
- `titles`: every document reduced to its title, a single sentence (BM25 is weak there);
- `keywords`: 600 queries of 3-5 mid-frequency terms drawn from one abstract each (BM25 is strong).
The last two are derived sets, not published benchmarks: they exercise the two regimes where a fixed
fusion weight loses to one retriever. `auto`'s curve was fitted on the train splits (`--split train`);
report the test split. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, require_scifact  # noqa: E402
from rag_assets.eval.run import run_eval  # noqa: E402

WORD = re.compile(r"[a-z][a-z0-9-]{3,}")


def titles_dataset(root: Path, out: Path) -> Path:
    (out / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open() as src, (out / "corpus.jsonl").open("w") as dst:
        for line in src:
            record = json.loads(line)
            dst.write(json.dumps({"_id": record["_id"], "title": "", "text": record["title"]}) + "\n")
    (out / "queries.jsonl").write_text((root / "queries.jsonl").read_text())
    for split in ("train", "test"):
        (out / "qrels" / f"{split}.tsv").write_text((root / "qrels" / f"{split}.tsv").read_text())
    return out


def keywords_dataset(root: Path, out: Path, n: int = 600, seed: int = 7) -> Path:
    (out / "qrels").mkdir(parents=True)
    texts = {}
    with (root / "corpus.jsonl").open() as src:
        for line in src:
            record = json.loads(line)
            texts[record["_id"]] = record["text"]
    df = collections.Counter(w for t in texts.values() for w in set(WORD.findall(t.lower())))
    rnd = random.Random(seed)
    queries, qrels = [], []
    for i, doc in enumerate(rnd.sample(sorted(texts), n)):
        words = sorted(set(WORD.findall(texts[doc].lower())), key=lambda w: (df[w], w))
        picked = [w for w in words if 2 <= df[w] <= 30][:5]
        if len(picked) < 3:
            continue
        rnd.shuffle(picked)
        queries.append({"_id": f"k{i}", "text": " ".join(picked)})
        qrels.append((f"k{i}", doc))
    (out / "corpus.jsonl").write_text((root / "corpus.jsonl").read_text())
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    half = len(qrels) // 2
    for split, part in (("train", qrels[:half]), ("test", qrels[half:])):
        (out / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in part))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="test")
    parser.add_argument("--corpora", default="abstracts,titles,keywords")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "rag-assets" / "embeddings"))
    args = parser.parse_args()
    root = require_scifact()
    results = {}
    with tempfile.TemporaryDirectory(prefix="rag-fusion-") as tmp:
        corpora = {
            "abstracts": root,
            "titles": titles_dataset(root, Path(tmp) / "titles"),
            "keywords": keywords_dataset(root, Path(tmp) / "keywords"),
        }
        for name, path in corpora.items():
            if name not in args.corpora.split(","):
                continue
            auto = run_eval(path, ["dense", "bm25", "hybrid"], split=args.split, cache_dir=Path(args.cache_dir))
            fixed = run_eval(path, ["hybrid"], split=args.split, cache_dir=Path(args.cache_dir), fusion="weighted", dense_weight=0.7)
            rrf = run_eval(path, ["hybrid"], split=args.split, cache_dir=Path(args.cache_dir), fusion="rrf")
            ndcg = {m: s["ndcg_at_10"] for m, s in auto.scores.items()}
            results[name] = {
                "dense": ndcg["dense"], "bm25": ndcg["bm25"], "hybrid_auto": ndcg["hybrid"],
                "auto_dense_weight": round(auto.dense_weight, 3),
                "hybrid_fixed_0.7": fixed.scores["hybrid"]["ndcg_at_10"], "hybrid_rrf": rrf.scores["hybrid"]["ndcg_at_10"],
                "auto_minus_best_single": round(ndcg["hybrid"] - max(ndcg["dense"], ndcg["bm25"]), 4),
                "queries": auto.queries,
            }
            print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    print(json.dumps({"split": args.split, "ndcg_at_10": results, "machine": machine()}))


if __name__ == "__main__":
    main()
