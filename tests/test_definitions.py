"""The code location as Dagster loads it: assets, tags, executor choice, sensors, jobs."""

import json
from pathlib import Path

import dagster as dg
import pytest

import definitions
from rag_assets.ingest.k8s import GPU_OP_TAGS
from rag_assets.inference.sql.assets import schema_index, warehouse


def asset_specs() -> dict[str, dg.AssetSpec]:
    return {spec.key.to_user_string(): spec for spec in definitions.defs.resolve_all_asset_specs()}


def test_ingestion_assets_have_groups_kinds_descriptions_and_lineage():
    specs = asset_specs()
    for name in ("documents", "chunks", "embeddings", "index"):
        spec = specs[name]
        assert spec.group_name == "ingestion" and spec.kinds and spec.description
        assert spec.partitions_def is not None
    deps = {name: {d.asset_key.to_user_string() for d in specs[name].deps} for name in ("chunks", "embeddings", "index")}
    assert deps == {"chunks": {"documents"}, "embeddings": {"chunks", "embedding_model"}, "index": {"chunks", "embeddings", "embedding_model"}}


def test_only_the_embedding_and_ranker_training_steps_ask_kubernetes_for_a_gpu():
    graph = definitions.defs.resolve_implicit_global_asset_job_def().graph
    tags = {node.name: node.definition.tags for node in graph.nodes}
    gpu = {name for name, t in tags.items() if "nvidia.com/gpu" in str(t.get("dagster-k8s/config", ""))}
    assert gpu == {"embeddings", "ranker_model"}
    assert json.loads(tags["embeddings"]["dagster-k8s/config"]) == GPU_OP_TAGS["dagster-k8s/config"]
    for name in ("documents", "chunks", "index"):
        assert "cpu" in str(tags[name]["dagster-k8s/config"])


def test_executor_is_chosen_by_environment(monkeypatch: pytest.MonkeyPatch):
    from dagster_k8s import k8s_job_executor

    monkeypatch.delenv("RAG_EXECUTOR", raising=False)
    assert definitions.choose_executor() is dg.multiprocess_executor
    monkeypatch.setenv("RAG_EXECUTOR", "k8s")
    chosen = definitions.choose_executor()
    assert chosen.name == "k8s" and chosen.executor_creation_fn is k8s_job_executor.executor_creation_fn


def test_sensor_schedule_and_jobs_are_registered_and_running_by_default():
    defs = definitions.defs
    assert defs.get_sensor_def("sources_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.get_schedule_def("nightly_reingest").default_status == dg.DefaultScheduleStatus.RUNNING
    for job in ("ingest", "purge_job", "ask_job", "sql_job"):
        assert defs.resolve_job_def(job) is not None


def test_the_code_location_validates_as_the_code_server_loads_it():
    """`dagster definitions validate` in a subprocess (building the repository in-process would leave
    Dagster's global load context pointing at a test's instance)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Validation successful" in proc.stdout + proc.stderr


def test_the_warehouse_and_schema_index_are_rebuilt_once_after_an_ingestion_run(workspace, tmp_path: Path):
    """The daemon's automation evaluation, run in-process on the same instance as a real ingestion run."""
    from rag_assets.pipeline import INGEST_ASSETS

    assert definitions.defs.get_sensor_def("sql_refresh_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    automated = dg.Definitions(assets=[*INGEST_ASSETS, warehouse, schema_index], resources=definitions.default_resources())
    first = dg.evaluate_automation_conditions(defs=automated, instance=workspace.instance)
    assert first.total_requested == 0  # nothing ingested yet: nothing to rebuild
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("# A\n\nSome text about the warehouse.\n")
    workspace.write_sources([{"name": "notes", "kind": "markdown", "paths": [str(tmp_path / "notes")]}])
    workspace.materialize("notes")
    after = dg.evaluate_automation_conditions(defs=automated, instance=workspace.instance, cursor=first.cursor)
    requested = {r.key for r in after.results if r.true_subset.size}
    assert requested == {dg.AssetKey("warehouse"), dg.AssetKey("schema_index")}
    again = dg.evaluate_automation_conditions(defs=automated, instance=workspace.instance, cursor=after.cursor)
    assert again.total_requested == 0  # handled: not requested again until the next ingestion
