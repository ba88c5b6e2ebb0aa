"""Does the default hybrid hold on other kinds of corpora? dense vs BM25 vs fixed-weight vs `auto`.

Three labeled corpora built from SciFact at run time (in a temp folder, nothing copied into the repo):
- `abstracts`: SciFact as published (claims -> abstracts);
- `titles`: every document reduced to its title, a single sentence (BM25 is weak there);
- `keywords`: 600 queries of 3-5 mid-frequency terms drawn from one abstract each (BM25 is strong);
- `sentences`: abstracts split into sentences, one passage each (the judged abstracts and 1,000 others,
  15k passages); a claim's relevant passages
  are the sentences SciFact's annotators marked as its evidence (query metadata), claims without any
  are dropped. Mimics a corpus of short one-sentence passages with natural questions.
The last three are derived sets, not published benchmarks: they exercise the regimes where a fixed
fusion weight loses to one retriever. Each corpus is ingested once into `--work` (reused by later runs)
and both candidate lists (dense and BM25, `DEPTH` chunks each) are fetched once per split with the
`Retriever` and cached there; every fusion method is then scored on the same lists. Tune on `train`,
report `test`. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import json
import pickle
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import machine, require_scifact  # noqa: E402
from rag_assets.eval.beir import load_beir  # noqa: E402
from rag_assets.eval.metrics import evaluate  # noqa: E402
from rag_assets.fusion import DEPTH, CalibrationStore, fuse  # noqa: E402
from rag_assets.retrieval import Hit, rank_documents  # noqa: E402

WORD = re.compile(r"[a-z][a-z0-9-]{3,}")
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
CORPORA = ("abstracts", "titles", "keywords", "sentences")
# Old `auto` (before per-query fusion), kept here to score it on the same lists: weight from the running
# mean confirmation gap, snapped at 0.30 / 0.85.
OLD_INTERCEPT, OLD_SLOPE, OLD_SNAP, OLD_PRIOR = 0.45, 3.5, (0.30, 0.85), 20


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


def split_sentences(text: str) -> list[str]:
    """Sentences of an abstract (punctuation followed by a capital, digit or bracket); aligns with
    SciFact's own sentence indices on all but 5 of 1,391 evidence sentences."""
    return [s for s in SENTENCE.split(text.strip()) if s]


def sentences_dataset(root: Path, out: Path, distractors: int = 1000, seed: int = 7) -> Path:
    """Sentence passages of every judged abstract (train and test) plus `distractors` random other
    abstracts (all 5,183 would be 45k passages: too slow to embed on a laptop CPU)."""
    (out / "qrels").mkdir(parents=True)
    splits = {split: load_beir(root, split).qrels for split in ("train", "test")}
    judged = {doc for qrels in splits.values() for docs in qrels.values() for doc in docs}
    records = [json.loads(line) for line in (root / "corpus.jsonl").read_text().splitlines() if line.strip()]
    others = sorted(r["_id"] for r in records if r["_id"] not in judged)
    keep = judged | set(random.Random(seed).sample(others, min(distractors, len(others))))
    corpus = {r["_id"]: split_sentences(r["text"]) for r in records if r["_id"] in keep}
    with (out / "corpus.jsonl").open("w") as dst:
        for doc, sentences in corpus.items():
            dst.write("".join(json.dumps({"_id": f"{doc}-{i}", "title": "", "text": s}) + "\n" for i, s in enumerate(sentences)))
    queries = [json.loads(line) for line in (root / "queries.jsonl").read_text().splitlines() if line.strip()]
    (out / "queries.jsonl").write_text("".join(json.dumps({"_id": q["_id"], "text": q["text"]}) + "\n" for q in queries))
    evidence = {q["_id"]: q.get("metadata") or {} for q in queries}
    for split, qrels in splits.items():
        pairs = []
        for qid, docs in qrels.items():
            for doc in docs:
                marked = {i for e in evidence[qid].get(doc, []) for i in e.get("sentences", []) if i < len(corpus.get(doc, []))}
                pairs += [(qid, f"{doc}-{i}") for i in sorted(marked)]
        (out / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in pairs))
    return out


def build_corpus(name: str, root: Path, out: Path) -> Path:
    """The BEIR folder for corpus `name` (built once under `out`)."""
    if name == "abstracts":
        return root
    if not (out / "qrels" / "test.tsv").exists():
        builder = {"titles": titles_dataset, "keywords": keywords_dataset, "sentences": sentences_dataset}[name]
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        builder(root, out)
    return out


@dataclass
class Lists:
    """Both candidate lists per query of one split, and the judged relevance."""

    queries: dict[str, str]
    dense: dict[str, list[Hit]]
    bm25: dict[str, list[Hit]]
    qrels: dict[str, dict[str, int]]
    to_beir_id: dict[str, str]


def _ingested(dataset: Path, source: str, ws_root: Path, cache_dir: Path):
    """A Retriever over `dataset` ingested once into `ws_root/milvus.db` (reused if already there).

    Runs the ingestion assets' own functions (load, chunk, embed, index) without Dagster, so the bench
    does not depend on how the assets are partitioned."""
    import polars as pl

    from rag_assets.chunking import Chunker, ChunkSettings
    from rag_assets.index_store import ensure_collection, sync_source
    from rag_assets.retrieval import Retriever
    from rag_assets.sources import load_source
    from rag_assets.sources.spec import SourceSpec
    from rag_assets.storage import collection_name
    from resources import EmbedderResource, MilvusResource

    embedder = EmbedderResource(cache_dir=str(cache_dir))
    ws_root.mkdir(parents=True, exist_ok=True)
    client = MilvusResource(uri=str(ws_root / "milvus.db")).client()
    name = collection_name(embedder.model_id)
    docs_file = ws_root / "documents.parquet"
    if not (ws_root / "ingested").exists():
        ws_root.mkdir(parents=True, exist_ok=True)
        import time

        started = time.perf_counter()
        spec = SourceSpec(name=source, kind="beir", paths=[str(dataset.resolve())], schedule="manual", max_file_mb=16_384)
        docs = load_source(spec, ws_root).to_frame(spec.sensitive).filter(pl.col("error").is_null())
        docs.write_parquet(docs_file)
        chunks = Chunker(embedder.tokenizer(), ChunkSettings(256, 32), embedder.max_tokens).chunk_frame(docs)
        vectors, _ = embedder.embed_documents(chunks["text"].to_list(), chunks["text_hash"].to_list())
        ensure_collection(client, name, embedder.dimension)
        sync_source(client, name, source, chunks, np.asarray(vectors, dtype=np.float32))
        (ws_root / "ingested").write_text(f"{time.perf_counter() - started:.1f}s, {chunks.height} chunks")
        print(f"ingested {source}: {chunks.height} chunks in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    docs = pl.read_parquet(docs_file)
    to_beir_id = dict(zip(docs["doc_id"].to_list(), docs["locator"].to_list()))
    return Retriever(client, name, embedder.embed_queries), to_beir_id


def candidate_lists(name: str, split: str, work: Path, cache_dir: Path, depth: int = DEPTH, batch: int = 64) -> Lists:
    """Dense and BM25 top-`depth` chunk lists for every query of `split` of corpus `name`, cached under `work`."""
    root = require_scifact()
    cache = work / f"lists-{name}-{split}-{depth}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    dataset = build_corpus(name, root, work / "data" / name)
    store = "abstracts" if name == "keywords" else name  # keywords queries run over the abstracts index
    retriever, to_beir_id = _ingested(build_corpus(store, root, work / "data" / store), store, work / "ws" / store, cache_dir)
    data = load_beir(dataset, split)
    qids = list(data.queries)
    dense, bm25 = {}, {}
    for start in range(0, len(qids), batch):
        part = qids[start : start + batch]
        texts = [data.queries[q] for q in part]
        vectors = np.asarray(retriever.embed_queries(texts), dtype=np.float32)
        for qid, d, b in zip(part, retriever._dense(vectors, depth, ""), retriever._bm25(texts, depth, "")):
            dense[qid], bm25[qid] = d, b
    lists = Lists(dict(data.queries), dense, bm25, data.qrels, to_beir_id)
    cache.write_bytes(pickle.dumps(lists))
    return lists


def doc_run(lists: Lists, ranked: dict[str, list[Hit]]) -> dict[str, list[str]]:
    return {q: [lists.to_beir_id[d] for d, _ in rank_documents(hits, 100)] for q, hits in ranked.items()}


def ndcg(lists: Lists, ranked: dict[str, list[Hit]]) -> float:
    return round(evaluate(doc_run(lists, ranked), lists.qrels)["ndcg_at_10"], 4)


def old_auto(lists: Lists, k: int = DEPTH, batch: int = 64) -> tuple[dict[str, list[Hit]], float]:
    """The previous `auto` exactly as `rag eval` ran it: calibrate on the split's queries, then search in
    batches, each batch observing its gaps before fusing with the running weight."""
    import math

    from rag_assets.fusion import confirmation_gap

    def weight(gap_sum: float, n: int) -> float:
        w = 1 / (1 + math.exp(-(OLD_INTERCEPT + OLD_SLOPE * gap_sum / (n + OLD_PRIOR))))
        return 0.0 if w < OLD_SNAP[0] else 1.0 if w > OLD_SNAP[1] else w

    qids = list(lists.queries)
    gaps = {q: confirmation_gap(lists.dense[q], lists.bm25[q]) for q in qids}
    total, n, out, w = sum(gaps.values()), len(qids), {}, 0.0
    for start in range(0, len(qids), batch):
        part = qids[start : start + batch]
        total, n = total + sum(gaps[q] for q in part), n + len(part)
        w = weight(total, n)
        out |= {q: fuse(lists.dense[q], lists.bm25[q], k, w) for q in part}
    return out, w


def new_auto(lists: Lists, k: int = DEPTH, batch: int = 64) -> tuple[dict[str, list[Hit]], float]:
    """`auto` as `rag eval` runs it with `Retriever.calibrate` and `search` calling `observe_lists`."""
    qids = list(lists.queries)
    store = CalibrationStore()
    store.observe_lists([lists.dense[q] for q in qids], [lists.bm25[q] for q in qids])
    out, w = {}, 0.0
    for start in range(0, len(qids), batch):
        part = qids[start : start + batch]
        w = store.observe_lists([lists.dense[q] for q in part], [lists.bm25[q] for q in part])
        out |= {q: fuse(lists.dense[q], lists.bm25[q], k, w) for q in part}
    return out, w


def score_methods(lists: Lists, ranker=None) -> dict[str, float]:
    """nDCG@10 of every method on the same candidate lists."""
    old, old_w = old_auto(lists)
    scores = {
        "dense": ndcg(lists, lists.dense),
        "bm25": ndcg(lists, lists.bm25),
        "fixed_0.7": ndcg(lists, {q: fuse(lists.dense[q], lists.bm25[q], DEPTH, 0.7) for q in lists.queries}),
        "old_auto": ndcg(lists, old),
        "old_auto_weight": round(old_w, 3),
    }
    new, new_w = new_auto(lists)
    scores |= {"new_auto": ndcg(lists, new), "new_auto_weight": round(new_w, 3)}
    if ranker is not None:
        from rag_assets.ranker import rerank

        scores["ranker"] = ndcg(lists, {q: rerank(ranker, lists.dense[q], lists.bm25[q], DEPTH, lists.queries[q]) for q in lists.queries})
    best = max(scores["dense"], scores["bm25"])
    scores["new_auto_minus_best_single"] = round(scores["new_auto"] - best, 4)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="test")
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--work", default="/tmp/rag-fusion", help="ingested corpora and cached candidate lists (reused)")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "rag-assets" / "embeddings"))
    parser.add_argument("--ranker", default="", help="a ranker JSON (bench/ranker_scifact.py) to score too")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ranker = None
    if args.ranker:
        from rag_assets.ranker import RankerModel

        ranker = RankerModel.load(Path(args.ranker))
    results = {}
    for name in args.corpora.split(","):
        lists = candidate_lists(name, args.split, work, Path(args.cache_dir))
        results[name] = score_methods(lists, ranker) | {"queries": len(lists.queries)}
        print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    print(json.dumps({"split": args.split, "ndcg_at_10": results, "machine": machine()}))


if __name__ == "__main__":
    main()
