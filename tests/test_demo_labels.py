"""The demo source's labeled evaluation set matches the source's documents, and `load_labels` checks its input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag_assets.eval.beir import BeirFormatError
from rag_assets.eval.labels import load_labels, labels_match_documents
from rag_assets.sources import SourceSpec, load_source, load_sources

REPO = Path(__file__).resolve().parents[1]
DEMO_SOURCE = "rag-assets-docs"
DEMO_LABELS = REPO / "experiments" / "labels" / DEMO_SOURCE


@pytest.fixture(scope="module")
def demo_locators() -> set[str]:
    """Locators of the demo source as the `documents` asset would load them (no model needed)."""
    sources_file = REPO / "sources.yaml"
    result = load_source(load_sources(sources_file)[DEMO_SOURCE], sources_file.parent)
    assert not result.failures, result.failures
    return {doc.locator for doc in result.documents}


def test_demo_set_is_large_and_fully_judged() -> None:
    labels = load_labels(DEMO_LABELS)
    assert len(labels.queries) >= 45
    assert labels.unjudged == []
    assert all(rel > 0 for rels in labels.qrels.values() for rel in rels.values())


def test_demo_questions_are_distinct() -> None:
    texts = [" ".join(text.lower().split()) for text in load_labels(DEMO_LABELS).queries.values()]
    assert len(set(texts)) == len(texts)
    raw_ids = [json.loads(line)["_id"] for line in (DEMO_LABELS / "queries.jsonl").read_text().splitlines() if line.strip()]
    assert len(set(raw_ids)) == len(raw_ids)


def test_every_demo_qrel_is_a_document_of_the_source(demo_locators: set[str]) -> None:
    labels = load_labels(DEMO_LABELS)
    assert labels_match_documents(labels, demo_locators) == []
    assert len(labels.doc_keys) >= 5  # the questions spread over the documentation, not one file


def test_labels_match_documents_names_a_renamed_document(demo_locators: set[str]) -> None:
    labels = load_labels(DEMO_LABELS)
    renamed = demo_locators - {"docs/operations.md"}
    assert labels_match_documents(labels, renamed) == ["docs/operations.md"]


def test_load_labels_errors_on_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(BeirFormatError, match="no labeled set at"):
        load_labels(tmp_path / "absent")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "what?"}\n', encoding="utf-8")
    with pytest.raises(BeirFormatError, match=r"no qrels/test\.tsv"):
        load_labels(tmp_path)
    with pytest.raises(BeirFormatError, match=r"no qrels/dev\.tsv"):
        load_labels(tmp_path, split="dev")


def test_load_labels_rejects_qrels_for_unknown_queries(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "what?"}\n', encoding="utf-8")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta.md\t1\nq2\tb.md\t1\n", encoding="utf-8")
    with pytest.raises(BeirFormatError, match="q2"):
        load_labels(tmp_path)


def test_beir_dataset_folder_is_its_own_labeled_set(tmp_path: Path) -> None:
    """For a `beir` source the corpus ids are the locators, so the dataset folder's qrels match them."""
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "x"}\n{"_id": "d2", "text": "y"}\n', encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "x?"}\n', encoding="utf-8")
    (tmp_path / "qrels" / "test.tsv").write_text("q1\td2\t1\nq1\td3\t1\n", encoding="utf-8")
    result = load_source(SourceSpec(name="mini", kind="beir", paths=[str(tmp_path)]), tmp_path)
    labels = load_labels(tmp_path)
    assert labels.qrels == {"q1": {"d2": 1, "d3": 1}}
    assert labels_match_documents(labels, {doc.locator for doc in result.documents}) == ["d3"]
