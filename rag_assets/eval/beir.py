"""Reading BEIR-format datasets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), and slicing them."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BeirDataset:
    root: Path
    queries: dict[str, str]  # query id -> text, only those judged in the split
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for row in reader:
            if len(row) < 3 or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def load_beir(root: Path, split: str = "test") -> BeirDataset:
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        raise FileNotFoundError(f"no qrels for split {split!r}: {qrels_path}")
    qrels = read_qrels(qrels_path)
    queries: dict[str, str] = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                q = json.loads(line)
                if q["_id"] in qrels:
                    queries[q["_id"]] = q["text"]
    return BeirDataset(root=root, queries=queries, qrels={q: r for q, r in qrels.items() if q in queries})


def write_slice(root: Path, out: Path, split: str, max_queries: int, max_docs: int) -> Path:
    """A smaller BEIR dataset: the first `max_queries` judged queries, their relevant documents, and
    other documents in corpus order up to `max_docs`. For quick checks (CI), not for reported figures."""
    data = load_beir(root, split)
    qids = list(data.queries)[:max_queries]
    needed = {d for q in qids for d in data.qrels[q]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    kept = 0
    with (root / "corpus.jsonl").open(encoding="utf-8") as src, (out / "corpus.jsonl").open("w", encoding="utf-8") as dst:
        for line in src:
            if not line.strip():
                continue
            doc_id = json.loads(line)["_id"]
            if doc_id in needed or kept < max_docs - len(needed):
                dst.write(line if line.endswith("\n") else line + "\n")
                kept += doc_id not in needed
    with (out / "queries.jsonl").open("w", encoding="utf-8") as dst:
        for q in qids:
            dst.write(json.dumps({"_id": q, "text": data.queries[q]}) + "\n")
    with (out / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as dst:
        dst.write("query-id\tcorpus-id\tscore\n")
        for q in qids:
            for d, rel in data.qrels[q].items():
                dst.write(f"{q}\t{d}\t{rel}\n")
    return out
