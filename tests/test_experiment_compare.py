"""Comparing an experiment's variants: the pure table functions on synthetic rows, the rows read from a Dagster
instance, and the GraphQL side (launcher and `fetch_rows`) against Dagster's GraphQL schema executed in
process on stand-in jobs named as the code location's (no webserver)."""

# no `from __future__ import annotations`: Dagster reads the config class from the asset's annotations
import json
import textwrap
import threading
from pathlib import Path

import dagster as dg
import pytest

from rag_assets.client import Client, ClientError
from rag_assets.experiments.compare import (
    COLUMNS, changed_settings, comparison, fetch_rows, fetch_rows_from_instance, make_row, to_dict, to_json, to_markdown,
    to_table_metadata,
)


def row(variant: str, source: str = "docs", ndcg: float | None = 0.5, latency: float | None = 10.0, **settings) -> dict:
    return make_row({"ndcg@10": ndcg, "recall@100": 0.9, "mrr@10": 0.4, "latency_p50_ms": latency, "embed_seconds": 2.5,
                     "llm_cost_usd": 0.0, "collection": f"chunks_{variant}", "variant_settings": json.dumps(settings),
                     "data_versions": {"chunks": "abc"}}, run_id=f"run-{variant}", partition=f"{source}|{variant}")


# --- the comparison, on synthetic rows ----------------------------------------------------------------------------

def test_best_per_source_by_ndcg_then_latency():
    rows = [row("default", ndcg=0.61, latency=12.0), row("c128", ndcg=0.64, latency=30.0), row("int8", ndcg=0.64, latency=9.0),
            row("none", ndcg=None), row("default", "wiki", ndcg=0.3), row("c128", "wiki", ndcg=0.2)]
    c = comparison(rows, "e1")
    assert c.best == {"docs": "int8", "wiki": "default"}  # 0.64 tie: the lower p50 latency wins
    assert [(r["source"], r["variant"]) for r in c.rows] == [
        ("docs", "int8"), ("docs", "c128"), ("docs", "default"), ("docs", "none"), ("wiki", "default"), ("wiki", "c128")]


def test_rows_without_ndcg_never_win():
    c = comparison([row("a", ndcg=None), row("b", ndcg=None)], "e1")
    assert c.best == {} and "No variant has an nDCG@10 yet." in to_markdown(c)


def test_markdown_table_and_best_line():
    c = comparison([row("default", ndcg=0.61), row("c128", ndcg=0.6512, chunk_max_tokens=128, chunk_overlap=16)], "e1")
    lines = to_markdown(c).splitlines()
    assert lines[0] == "| source | variant | nDCG@10 | R@100 | MRR@10 | p50 ms | embed s | LLM $ | settings |"
    assert lines[1] == "|---|---|---:|---:|---:|---:|---:|---:|---|"
    assert lines[2] == "| docs | **c128** (best) | 0.6512 | 0.9000 | 0.4000 | 10.0 | 2.5 | 0.0000 | chunk_max_tokens=128, chunk_overlap=16 |"
    assert lines[3].startswith("| docs | default | 0.6100 |") and lines[3].endswith("| defaults |")
    assert lines[-1] == "Best variant by nDCG@10 (ties: lower p50 latency): c128 on docs (nDCG@10 0.6512)."
    assert to_markdown(comparison([], "e9")) == "No evaluation yet for experiment 'e9'.\n"


def test_missing_metric_shows_a_dash():
    assert "| – |" in to_markdown(comparison([row("a", latency=None)], "e1"))


def test_json_and_table_metadata():
    c = comparison([row("default", ndcg=0.61), row("c128", ndcg=0.65, chunk_max_tokens=128)], "e1")
    out = json.loads(to_json(c))
    assert out["experiment"] == "e1" and out["best"] == {"docs": "c128"}
    assert [(r["variant"], r["best"]) for r in out["rows"]] == [("c128", True), ("default", False)]
    assert out["rows"][0]["variant_settings"] == {"chunk_max_tokens": 128} and out["rows"][0]["data_versions"] == {"chunks": "abc"}
    assert to_dict(c) == out
    table = to_table_metadata(c)
    assert [col.name for col in table.schema.columns] == [name for name, *_ in COLUMNS]
    assert all(col.description for col in table.schema.columns)
    first = table.records[0].data
    assert first["variant"] == "c128" and first["best"] is True and first["ndcg@10"] == 0.65 and first["settings"] == "chunk_max_tokens=128"


def test_changed_settings_ignores_unknown_keys_and_defaults():
    assert changed_settings({"variant_settings": {"chunk_max_tokens": 256, "top_k": 8, "not_a_setting": 1}}) == "top_k=8"
    assert changed_settings({"variant_settings": {}}) == "defaults"


# --- rows from a Dagster instance -----------------------------------------------------------------------------------

SOURCES, VARIANTS = ["docs", "wiki"], ["default", "c128"]
static_partitions = dg.MultiPartitionsDefinition({"source": dg.StaticPartitionsDefinition(SOURCES),
                                                  "variant": dg.StaticPartitionsDefinition(VARIANTS)})


class ScoreConfig(dg.Config):
    ndcg: float
    with_names: bool = True  # put "source"/"variant" in the metadata (else they come from the partition key)


@dg.asset(name="evaluation", partitions_def=static_partitions)
def evaluation_standin(context: dg.AssetExecutionContext, config: ScoreConfig) -> dg.MaterializeResult:
    dims = context.partition_key.keys_by_dimension
    names = {"source": dims["source"], "variant": dims["variant"]} if config.with_names else {}
    return dg.MaterializeResult(metadata={
        "ndcg@10": config.ndcg, "recall@100": 0.8, "mrr@10": 0.5, "latency_p50_ms": 7.5, "latency_p95_ms": 20.0,
        "embed_seconds": 1.25, "llm_cost_usd": 0.0, "collection": f"chunks_{dims['variant']}", "queries": 12,
        "variant_settings": dg.MetadataValue.json({"chunk_max_tokens": 128} if dims["variant"] == "c128" else {}),
        "data_versions": dg.MetadataValue.json({"chunks": "v1"}), **names})


@dg.asset
def unrelated() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"ndcg@10": 1.0})


def materialize(instance, source: str, variant: str, ndcg: float, experiment: str = "e1", with_names: bool = True) -> str:
    result = dg.materialize([evaluation_standin, unrelated], instance=instance, partition_key=f"{source}|{variant}",
                            tags={"experiment": experiment, "variant": variant},
                            run_config={"ops": {"evaluation": {"config": {"ndcg": ndcg, "with_names": with_names}}}})
    return result.run_id


def test_fetch_rows_from_instance_latest_per_source_and_variant():
    with dg.DagsterInstance.ephemeral() as instance:
        materialize(instance, "docs", "default", 0.40)
        newer = materialize(instance, "docs", "default", 0.45)  # re-evaluated: the latest counts
        c128 = materialize(instance, "docs", "c128", 0.50, with_names=False)
        materialize(instance, "wiki", "default", 0.30)
        materialize(instance, "docs", "c128", 0.99, experiment="other")
        rows = fetch_rows_from_instance(instance, "e1")
        assert fetch_rows_from_instance(instance, "absent") == []
    assert [(r["source"], r["variant"], r["ndcg@10"]) for r in rows] == [("docs", "c128", 0.5), ("docs", "default", 0.45), ("wiki", "default", 0.3)]
    by_key = {(r["source"], r["variant"]): r for r in rows}
    assert by_key["docs", "default"]["run_id"] == newer and by_key["docs", "c128"]["run_id"] == c128
    first = by_key["docs", "c128"]
    assert first["variant_settings"] == {"chunk_max_tokens": 128} and first["data_versions"] == {"chunks": "v1"}
    assert first["collection"] == "chunks_c128" and first["latency_p50_ms"] == 7.5 and first["llm_cost_usd"] == 0.0
    assert set(first) == {"variant", "source", "ndcg@10", "recall@100", "mrr@10", "latency_p50_ms", "embed_seconds", "llm_cost_usd",
                          "collection", "variant_settings", "data_versions", "run_id"}
    assert comparison(rows, "e1").best == {"docs": "c128", "wiki": "default"}


# --- over GraphQL: Dagster's schema executed in process, stand-in jobs with the code location's names ---------------

STANDIN_DEFS = '''
import dagster as dg
from rag_assets.experiments.launch import EXPERIMENT_JOB, MODELS_JOB, REPORT_JOB
from rag_assets.variants import get_variant

sources = dg.DynamicPartitionsDefinition(name="sources")
variants = dg.DynamicPartitionsDefinition(name="variants")
multi = dg.MultiPartitionsDefinition({"source": sources, "variant": variants})

@dg.asset(partitions_def=variants)
def embedding_model(context) -> None:
    get_variant(context.partition_key)  # registered before the run

@dg.asset(partitions_def=multi)
def index() -> None: ...

@dg.asset(partitions_def=multi, deps=[index])
def evaluation(context) -> dg.MaterializeResult:
    dims = context.partition_key.keys_by_dimension
    settings = get_variant(dims["variant"]).settings()
    if dims["variant"].startswith("broken"):
        raise RuntimeError("labels do not match the documents")
    small = settings["chunk_max_tokens"] < 256
    return dg.MaterializeResult(metadata={
        "ndcg@10": 0.62 if small else 0.58, "recall@100": 0.9, "mrr@10": 0.5, "latency_p50_ms": 12.0 if small else 8.0,
        "embed_seconds": 3.0, "llm_cost_usd": 0.0, "collection": "chunks_x", "source": dims["source"], "variant": dims["variant"],
        "variant_settings": dg.MetadataValue.json(settings), "data_versions": dg.MetadataValue.json({"chunks": "v1"})})

@dg.asset
def experiment_report(context) -> dg.MaterializeResult:
    from rag_assets.experiments.compare import comparison, fetch_rows_from_instance, to_table_metadata
    return dg.MaterializeResult(metadata={"table": to_table_metadata(comparison(fetch_rows_from_instance(context.instance, "e1")))})

defs = dg.Definitions(
    assets=[embedding_model, index, evaluation, experiment_report], executor=dg.in_process_executor,
    jobs=[dg.define_asset_job(MODELS_JOB, selection=[embedding_model], partitions_def=variants),
          dg.define_asset_job(EXPERIMENT_JOB, selection=[index, evaluation], partitions_def=multi),
          dg.define_asset_job(REPORT_JOB, selection=[experiment_report])])
'''


class InProcessClient(Client):
    """The client, its requests answered by Dagster's GraphQL schema in this process (one at a time)."""

    def __init__(self, process_context):
        super().__init__("http://in-process")
        self._context, self._lock = process_context, threading.Lock()

    def _graphql(self, query: str, variables: dict) -> dict:
        from dagster_graphql.test.utils import execute_dagster_graphql

        with self._lock:  # runs execute synchronously inside `launchRun` (SyncInMemoryRunLauncher)
            return execute_dagster_graphql(self._context.create_request_context(), query, variables).data


@pytest.fixture
def platform(tmp_path, monkeypatch):
    """(client, instance): a test instance whose launched runs execute at once, in process, and the stand-in code location."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import instance_for_test
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    from rag_assets.client import LOCATION

    monkeypatch.setenv("RAG_VARIANTS", str(tmp_path / "variants.yaml"))
    defs_file = tmp_path / "standin_defs.py"
    defs_file.write_text(textwrap.dedent(STANDIN_DEFS), encoding="utf-8")
    overrides = {"run_launcher": {"module": "dagster._core.launcher.sync_in_memory_run_launcher", "class": "SyncInMemoryRunLauncher"},
                 "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}}
    origin = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=str(defs_file), attribute="defs"), location_name=LOCATION)
    with instance_for_test(overrides=overrides) as instance:
        with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process_context:
            errors = [e.load_error for e in process_context.create_request_context().get_code_location_entries().values() if e.load_error]
            assert not errors, errors[0].message
            instance.add_dynamic_partitions("sources", ["docs", "wiki"])  # no variant yet
            yield InProcessClient(process_context), instance


def cli_compare(client: Client, capsys, monkeypatch) -> None:
    """`rag experiment compare e1 [--json]` against the platform of `client`."""
    import argparse

    from rag_assets.experiments import cli

    parser = argparse.ArgumentParser(prog="rag")
    cli.add_parser(parser.add_subparsers(dest="command"))
    monkeypatch.setattr(cli, "Client", lambda url: client)
    capsys.readouterr()
    args = parser.parse_args(["experiment", "compare", "e1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| docs | **c128** (best) | 0.6200 |" in out and "Best variant by nDCG@10 (ties: lower p50 latency): c128 on docs" in out
    args = parser.parse_args(["experiment", "compare", "e1", "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["best"] == {"docs": "c128"}
    args = parser.parse_args(["experiment", "compare", "e2"])
    with pytest.raises(ClientError, match="no evaluation of experiment 'e2' on http://in-process: check the name"):
        args.func(args)


def experiment_file(tmp_path: Path, variants: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: e1\nsources: [docs]\nconcurrency: 2\nvariants: {variants}\n", encoding="utf-8")
    return path


def test_run_then_compare_over_graphql(platform, tmp_path, capsys, monkeypatch):
    from rag_assets.experiments.launch import REPORT_JOB, run_experiment
    from rag_assets.experiments.spec import load_experiment

    client, instance = platform
    exp = load_experiment(experiment_file(tmp_path, "[{name: default}, {name: c128, chunk_max_tokens: 128, chunk_overlap: 16}, "
                                                     "{name: broken-one, top_k: 3}]"))
    lines: list[str] = []
    outcome = run_experiment(exp, client, on_progress=lines.append, timeout_s=60)
    assert set(instance.get_dynamic_partitions("variants")) == {"default", "c128", "broken-one"}
    by_name = {v.variant: v for v in outcome.variants}
    assert by_name["default"].status == by_name["c128"].status == "succeeded" and len(by_name["c128"].run_ids) == 2
    assert by_name["broken-one"].status == "failed" and "evaluation: RuntimeError: labels do not match the documents" in by_name["broken-one"].error
    assert any(line.startswith("[broken-one] FAILED: run ") for line in lines)
    report = instance.get_run_by_id(outcome.report_run_id)
    assert report.job_name == REPORT_JOB and report.is_success

    rows = fetch_rows(client, "e1")
    assert rows == fetch_rows_from_instance(instance, "e1")  # the CLI and the report asset read the same table
    assert [(r["source"], r["variant"]) for r in rows] == [("docs", "c128"), ("docs", "default")]
    assert rows[0]["variant_settings"]["chunk_max_tokens"] == 128 and rows[0]["data_versions"] == {"chunks": "v1"}
    run = instance.get_run_by_id(rows[0]["run_id"])
    assert run.tags["experiment"] == "e1" and run.tags["variant"] == "c128" and run.tags["dagster/partition"] == "docs|c128"
    assert comparison(rows, "e1").best == {"docs": "c128"}
    assert fetch_rows(client, "absent") == []

    cli_compare(client, capsys, monkeypatch)

    again = run_experiment(exp.model_copy(update={"variants": exp.variants[:1]}), client, timeout_s=60)  # partitions exist: fine
    assert again.ok and len(instance.get_runs(filters=dg.RunsFilter(tags={"experiment": "e1", "variant": "default"}))) == 4


def test_unknown_source_over_graphql_launches_nothing(platform, tmp_path):
    from rag_assets.experiments.launch import run_experiment
    from rag_assets.experiments.spec import load_experiment

    client, instance = platform
    path = tmp_path / "exp.yaml"
    path.write_text("name: e1\nsources: [docs, slack]\nvariants: [{name: default}]\n", encoding="utf-8")
    with pytest.raises(ClientError, match=r"unknown source 'slack' \(the platform at http://in-process knows: docs, wiki\)"):
        run_experiment(load_experiment(path), client)
    assert instance.get_runs() == []
