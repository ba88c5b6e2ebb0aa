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


BEIR_LAYOUT = "corpus.jsonl, queries.jsonl and qrels/<split>.tsv"


class BeirFormatError(ValueError):
    """A dataset folder that is missing or not BEIR-shaped; the message says what to pass instead."""


def check_beir(root: Path, split: str = "test") -> None:
    """Raise `BeirFormatError` unless `root` is a folder holding a BEIR dataset with qrels for `split`."""
    if not root.is_dir():
        raise BeirFormatError(f"no dataset folder at {root}: pass --dataset a BEIR folder ({BEIR_LAYOUT})")
    missing = [name for name in ("corpus.jsonl", "queries.jsonl") if not (root / name).is_file()]
    if missing:
        raise BeirFormatError(f"{root} is not a BEIR dataset (no {' or '.join(missing)}): pass --dataset a folder with {BEIR_LAYOUT}")
    if not (root / "qrels" / f"{split}.tsv").is_file():
        splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        have = f"splits here: {', '.join(splits)}" if splits else f"no qrels/*.tsv in {root}"
        raise BeirFormatError(f"no qrels for split {split!r} in {root} ({have}): pass --split one of them")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for row in reader:
            if len(row) < 3 or row[0] == "query-id":
                continue
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except ValueError:
                raise BeirFormatError(f"{path}:{reader.line_num}: relevance {row[2]!r} is not an integer: "
                                      "each line must be query-id<TAB>corpus-id<TAB>score") from None
    return qrels


def read_queries(path: Path) -> dict[str, str]:
    """Query id -> text from a BEIR `queries.jsonl`; a bad line raises `BeirFormatError` naming it."""
    queries: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                queries[str(record["_id"])] = record["text"]
            except (ValueError, KeyError, TypeError) as exc:
                raise BeirFormatError(f"{path}:{lineno}: not a BEIR query ({exc.__class__.__name__}): "
                                      'each line must be a JSON object with "_id" and "text"') from exc
    return queries


def load_beir(root: Path, split: str = "test") -> BeirDataset:
    check_beir(root, split)
    qrels = read_qrels(root / "qrels" / f"{split}.tsv")
    queries = {q: t for q, t in read_queries(root / "queries.jsonl").items() if q in qrels}
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
