"""The trained ranker as an asset: fitted on a BEIR train split through the real ingestion and retrieval, scored on
the test split against `auto`, saved, and used by a `fusion: ranker` variant's evaluation; GPU-tagged like embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from rag_assets.experiments.evaluation import evaluation
from rag_assets.ingest.k8s import GPU_OP_TAGS
from rag_assets.models.ranker_asset import ranker_model, trained_ranker
from rag_assets.pipeline import INGEST_ASSETS, Workspace
from rag_assets.storage import ranker_path
from rag_assets.variants import VariantSettings, register

TOPICS = ["vector databases", "graph search", "sparse retrieval", "query planning", "columnar storage", "stream joins",
          "model quantization", "tokenizers", "dynamic partitions", "run queues", "asset lineage", "data versions"]


def beir(root: Path) -> Path:
    """12 topics, two documents each; one train and one test question per topic, answered by its first document."""
    (root / "qrels").mkdir(parents=True)
    docs, queries, train, test = [], [], [], []
    for i, topic in enumerate(TOPICS):
        docs.append({"_id": f"d{i}a", "title": topic.title(), "text": f"All about {topic}: how {topic} work and why {topic} matter."})
        docs.append({"_id": f"d{i}b", "title": f"Notes {i}", "text": f"Loosely related remarks mentioning {topic.split()[0]} once."})
        queries += [{"_id": f"tr{i}", "text": f"how do {topic} work"}, {"_id": f"te{i}", "text": f"why do {topic} matter"}]
        train.append(f"tr{i}\td{i}a\t1")
        test.append(f"te{i}\td{i}a\t1")
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    for split, rows in (("train", train), ("test", test)):
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return root


def test_the_training_op_asks_for_a_gpu():
    spec = next(iter(ranker_model.specs))
    assert json.loads(ranker_model.op.tags["dagster-k8s/config"]) == GPU_OP_TAGS["dagster-k8s/config"] and spec.group_name == "models"


def test_a_ranker_variant_without_a_trained_model_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAG_HOME", str(tmp_path))
    assert trained_ranker(VariantSettings(name="auto")) is None
    with pytest.raises(FileNotFoundError, match="materialize the `ranker_model` asset"):
        trained_ranker(VariantSettings(name="learned", fusion="ranker"))


@pytest.mark.slow
def test_ranker_is_trained_scored_saved_and_used_by_a_ranker_variant(workspace: Workspace, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAG_VARIANTS", str(tmp_path / "variants.yaml"))
    data = beir(tmp_path / "toy")
    result = dg.materialize([ranker_model], instance=workspace.instance, resources=workspace.resources(),
                            run_config={"ops": {"ranker_model": {"config": {"dataset": str(data)}}}})
    meta = {k: getattr(v, "value", v) for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}
    assert meta["queries"] == 12 and meta["positives"] >= 12
    assert 0 < meta["test_ndcg@10_auto"] <= 1 and 0 < meta["test_ndcg@10_ranker"] <= 1
    assert meta["gain_over_auto"] == round(meta["test_ndcg@10_ranker"] - meta["test_ndcg@10_auto"], 4)
    assert ranker_path().is_file() and trained_ranker(VariantSettings(name="x", fusion="ranker")).weights

    # The same dataset as a source, evaluated by a variant that fuses with the trained ranker.
    workspace.write_sources([{"name": "toy", "kind": "beir", "paths": [str(data)]}])
    register([VariantSettings(name="learned", fusion="ranker")])
    workspace.materialize("toy", variant="learned")
    evaluated = dg.materialize([*INGEST_ASSETS, evaluation], selection=[evaluation], partition_key=workspace.add_partition("toy", "learned"),
                               instance=workspace.instance, resources=workspace.resources())
    scores = evaluated.get_asset_materialization_events()[0].materialization.metadata
    assert scores["variant"].value == "learned" and 0 < scores["ndcg@10"].value <= 1
