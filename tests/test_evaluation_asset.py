"""The `evaluation` asset: real retrieval over a real index scored against a labeled set; its regression check;
its automation (re-evaluated after the index changes); model cards as assets feeding data versions."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from rag_assets.experiments.evaluation import TOLERANCE, evaluation, regression_check
from rag_assets.pipeline import INGEST_ASSETS, Workspace

TOPICS = {
    "milvus.md": "# Milvus\n\nThe vector database stores dense embeddings in HNSW graphs and BM25 sparse vectors for keyword search.",
    "dagster.md": "# Dagster\n\nAn orchestrator of software-defined assets: partitions, sensors, schedules and run queues.",
    "duckdb.md": "# DuckDB\n\nAn embedded analytical SQL database reading Parquet files with columnar execution.",
    "gemma.md": "# Gemma\n\nA small open language model quantized to four bits and served by llama.cpp on a CPU.",
}
QUESTIONS = {
    "q1": ("Where are HNSW vector graphs kept?", "milvus.md"),
    "q2": ("Which orchestrator has sensors and run queues?", "dagster.md"),
    "q3": ("What reads Parquet with columnar SQL?", "duckdb.md"),
    "q4": ("Which quantized language model runs on llama.cpp?", "gemma.md"),
}


def write_labels(folder: Path, qrels: dict[str, str]) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in QUESTIONS.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels.items()))
    return folder


def test_regression_check_keeps_the_last_accepted_value():
    assert regression_check(0.70, None, False) == (True, 0.70)  # the first evaluation is the baseline
    assert regression_check(0.70 - TOLERANCE + 0.001, 0.70, False)[0]
    assert regression_check(0.60, 0.70, False) == (False, 0.70)  # a regression does not move the baseline
    assert regression_check(0.60, 0.70, True) == (False, 0.60)  # unless accepted on purpose
    assert regression_check(0.80, 0.70, False) == (True, 0.80)


def evaluate(ws: Workspace, labels: Path | None = None) -> dg.ExecuteInProcessResult:
    config = {"ops": {"evaluation": {"config": {"labels": str(labels)}}}} if labels else {}
    key = ws.add_partition("topics")
    return dg.materialize([*INGEST_ASSETS, evaluation], selection=[evaluation], partition_key=key, instance=ws.instance,
                          resources=ws.resources(), run_config=config, raise_on_error=False)


@pytest.mark.slow
def test_evaluation_scores_the_index_and_its_check_fails_on_a_regression(workspace: Workspace, tmp_path: Path):
    docs = workspace.root / "topics"
    docs.mkdir(parents=True)
    for name, text in TOPICS.items():
        (docs / name).write_text(text, encoding="utf-8")
    good = write_labels(tmp_path / "labels", {q: d for q, (_, d) in QUESTIONS.items()})
    workspace.write_sources([{"name": "topics", "kind": "markdown", "paths": ["topics"], "labels": str(good)}])
    workspace.materialize("topics")

    first = evaluate(workspace)
    assert first.success
    meta = {k: getattr(v, "value", v) for k, v in first.get_asset_materialization_events()[0].materialization.metadata.items()}
    assert meta["ndcg@10"] > 0.9 and meta["recall@100"] == 1.0 and meta["queries"] == 4  # one obvious answer each
    assert meta["latency_p95_ms"] >= meta["latency_p50_ms"] > 0
    assert set(meta["data_versions"]) == {"documents", "chunks", "embeddings", "index"} and all(meta["data_versions"].values())
    assert meta["collection"].startswith("chunks__") and meta["variant"] == "default"
    assert [c.passed for c in first.get_asset_check_evaluations()] == [True]

    # Same index, labels that point every question at the wrong document: nDCG@10 falls, the check fails (ERROR).
    wrong = write_labels(tmp_path / "wrong", {"q1": "gemma.md", "q2": "milvus.md", "q3": "dagster.md", "q4": "duckdb.md"})
    worse = evaluate(workspace, wrong)
    (check,) = worse.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    worse_meta = worse.get_asset_materialization_events()[0].materialization.metadata
    assert worse_meta["accepted_ndcg@10"].value == meta["ndcg@10"]  # the baseline did not move

    again = evaluate(workspace)
    assert [c.passed for c in again.get_asset_check_evaluations()] == [True]

    # A labeled document the source no longer has: a clear failure, not a silent zero.
    renamed = write_labels(tmp_path / "renamed", {"q1": "vectors.md"})
    failed = evaluate(workspace, renamed)
    assert not failed.success
    assert "vectors.md" in str(failed.get_step_failure_events()[0].event_specific_data.error.message)


@pytest.mark.slow
def test_evaluation_is_requested_after_its_index_changes_for_sources_with_labels(workspace: Workspace, tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch):
    docs = workspace.root / "topics"
    docs.mkdir(parents=True)
    (docs / "milvus.md").write_text(TOPICS["milvus.md"], encoding="utf-8")
    labels = write_labels(tmp_path / "labels", {"q1": "milvus.md"})
    workspace.write_sources([{"name": "topics", "kind": "markdown", "paths": ["topics"], "labels": str(labels)},
                             {"name": "unlabeled", "kind": "markdown", "paths": ["topics"]}])
    monkeypatch.setenv("RAG_SOURCES", str(workspace.sources_file))  # what the condition reads, as in `rag dev`
    automated = dg.Definitions(assets=[*INGEST_ASSETS, evaluation], resources=workspace.resources())
    first = dg.evaluate_automation_conditions(defs=automated, instance=workspace.instance)
    assert first.total_requested == 0
    workspace.materialize("topics")
    workspace.materialize("unlabeled")
    after = dg.evaluate_automation_conditions(defs=automated, instance=workspace.instance, cursor=first.cursor)
    requested = {(r.key.to_user_string(), key) for r in after.results for key in r.true_subset.expensively_compute_partition_keys()}
    assert requested == {("evaluation", "topics|default")}  # the unlabeled source is not evaluated
    again = dg.evaluate_automation_conditions(defs=automated, instance=workspace.instance, cursor=after.cursor)
    assert again.total_requested == 0
