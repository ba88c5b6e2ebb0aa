"""Labeled evaluation sets for a source: BEIR `queries.jsonl` + `qrels/<split>.tsv`, without a corpus.

The corpus is the source itself, so a qrels doc key is a document's `locator` (a Markdown file's path
relative to `sources.yaml`, a URL, `issues/<n>`, ...). For a `beir` source the labeled set is the dataset
folder and its corpus ids are the locators (`rag_assets.sources.beir`), so the same keys work there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rag_assets.eval.beir import BeirFormatError, read_qrels, read_queries

QUERIES_FILE = "queries.jsonl"


@dataclass(frozen=True)
class LabeledSet:
    root: Path
    queries: dict[str, str]  # query id -> text, every query of queries.jsonl
    qrels: dict[str, dict[str, int]]  # query id -> {doc key (locator): relevance}

    @property
    def unjudged(self) -> list[str]:
        """Query ids without any qrel (an evaluation would skip them)."""
        return sorted(set(self.queries) - set(self.qrels))

    @property
    def doc_keys(self) -> set[str]:
        return {doc for rels in self.qrels.values() for doc in rels}


def load_labels(root: Path, split: str = "test") -> LabeledSet:
    """The labeled set in `root` (queries.jsonl, qrels/<split>.tsv); `BeirFormatError` if it is missing or
    its qrels judge a query that queries.jsonl does not hold."""
    queries_path, qrels_path = root / QUERIES_FILE, root / "qrels" / f"{split}.tsv"
    if not root.is_dir():
        raise BeirFormatError(f"no labeled set at {root}: expected a folder with {QUERIES_FILE} and qrels/{split}.tsv")
    for path in (queries_path, qrels_path):
        if not path.is_file():
            raise BeirFormatError(f"{root} is not a labeled set (no {path.relative_to(root)}): "
                                  f"expected {QUERIES_FILE} and qrels/{split}.tsv")
    queries, qrels = read_queries(queries_path), read_qrels(qrels_path)
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        raise BeirFormatError(f"{qrels_path} judges queries missing from {QUERIES_FILE}: {', '.join(unknown[:10])}")
    return LabeledSet(root=root, queries=queries, qrels=qrels)


def labels_match_documents(labels: LabeledSet, locators: set[str]) -> list[str]:
    """The qrels doc keys that are not among the source's document locators (sorted), e.g. a renamed file."""
    return sorted(labels.doc_keys - locators)
