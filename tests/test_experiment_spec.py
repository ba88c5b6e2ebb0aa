"""Experiment files (`rag experiment run FILE`): the shipped example, one-line errors, and the launcher's
behaviour on a stand-in client (variants registered first, at most `concurrency` at once, a failed variant
recorded while the others go on). The launcher on real GraphQL is in test_experiment_compare.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rag_assets.client import Client, ClientError, RunFailed
from rag_assets.experiments.launch import EXPERIMENT_JOB, MODELS_JOB, REPORT_JOB, run_experiment
from rag_assets.experiments.spec import ExperimentError, load_experiment
from rag_assets.variants import VariantError, VariantSettings, load_registry, register

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def labels(tmp_path: Path, split: str = "test") -> Path:
    root = tmp_path / "labels"
    (root / "qrels").mkdir(parents=True)
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "how?"}\n', encoding="utf-8")
    (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tREADME.md\t1\n", encoding="utf-8")
    return root


# --- the file ----------------------------------------------------------------------------------------------------

def test_demo_file_is_valid_with_four_distinct_builds():
    exp = load_experiment(DEMO)
    assert exp.name == "demo-chunking-models" and exp.sources == ["rag-assets-docs"]
    assert [v.name for v in exp.variants] == ["default", "c128-minilm", "c256-int8", "c128-int8"]
    assert Path(exp.labels).is_absolute() and (Path(exp.labels) / "qrels" / "test.tsv").is_file()
    # 2 chunk sizes x 2 models: four different ingestions, the default one under today's storage names
    keys = [v.ingest_key() for v in exp.variants]
    assert keys[0] == "" and len(set(keys)) == 4
    assert {v.embedding_model for v in exp.variants} == {"", "all-MiniLM-L6-v2-int8"}
    assert {(v.chunk_max_tokens, v.chunk_overlap) for v in exp.variants} == {(256, 32), (128, 16)}


def test_labels_resolved_relative_to_the_file(tmp_path):
    labels(tmp_path)
    path = write(tmp_path, "name: e1\nsources: [docs]\nlabels: labels\nvariants: [{name: a}]\n")
    assert load_experiment(path).labels == str((tmp_path / "labels").resolve())
    assert load_experiment(write(tmp_path, "name: e1\nsources: [docs]\nvariants: [{name: a}]\n", "nolabels.yaml")).labels is None


@pytest.mark.parametrize("text, expected", [
    ("name: e1\nsources: [docs\n", "YAML syntax error at line"),
    ("- just\n- a list\n", "expected a mapping"),
    ("name: E 1\nsources: [docs]\nvariants: [{name: a}]\n", "name: String should match pattern"),
    ("name: e1\nvariants: [{name: a}]\n", "sources: Field required"),
    ("name: e1\nsources: []\nvariants: [{name: a}]\n", "sources: List should have at least 1 item"),
    ("name: e1\nsources: [docs, docs]\nvariants: [{name: a}]\n", "sources: a source is listed twice"),
    ("name: e1\nsources: [docs]\nvariants: []\n", "variants: List should have at least 1 item"),
    ("name: e1\nsources: [docs]\nvariants: [{name: a, chunk_size: 3}]\n", "variants[0] (name 'a').chunk_size: Extra inputs are not permitted"),
    ("name: e1\nsources: [docs]\nvariants: [{name: a}, {name: b, chunk_max_tokens: 64, chunk_overlap: 64}]\n",
     "variants[1] (name 'b'): chunk_overlap (64) must be below chunk_max_tokens (64)"),
    ("name: e1\nsources: [docs]\nvariants: [{name: a}, {name: a, top_k: 3}]\n", "variant 'a' is named twice"),
    ("name: e1\nsources: [docs]\nvariants: [{name: default, chunk_max_tokens: 128}]\n",
     "variant 'default' is today's settings and cannot change them (chunk_max_tokens)"),
    ("name: e1\nsources: [docs]\nvariants: [{name: a}]\nconcurrency: 0\n", "concurrency: Input should be greater than or equal to 1"),
    ("name: e1\nsources: [docs]\nvariants: [{name: a}]\nbudget: 3\n", "budget: Extra inputs are not permitted"),
])
def test_invalid_file_one_line_naming_the_field(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    message = str(info.value)
    assert expected in message and message.startswith(str(path)) and "\n" not in message


def test_default_variant_with_a_description_only_is_accepted(tmp_path):
    exp = load_experiment(write(tmp_path, "name: e1\nsources: [docs]\nvariants: [{name: default, description: today}]\n"))
    assert exp.variants[0].settings() == VariantSettings().settings()


def test_missing_file_and_missing_labels(tmp_path):
    with pytest.raises(ExperimentError, match="no such experiment file"):
        load_experiment(tmp_path / "absent.yaml")
    labels(tmp_path, split="train")
    path = write(tmp_path, "name: e1\nsources: [docs]\nlabels: labels\nvariants: [{name: a}]\n")
    with pytest.raises(ExperimentError, match=r"labels: no .*qrels/test.tsv"):
        load_experiment(path)


# --- the launcher on a stand-in client ------------------------------------------------------------------------------

class FakeClient(Client):
    """Records launches; `experiment` runs of the variants in `failing` end in FAILURE; each run takes `run_s`."""

    def __init__(self, failing: set[str] = frozenset(), run_s: float = 0.0, sources: list[str] | None = None):
        super().__init__("http://fake")
        self.failing, self.run_s, self.known = failing, run_s, sources or ["docs", "wiki"]
        self.launched: list[tuple[str, dict, dict]] = []
        self.partitions: list[str] = []
        self.lock, self.running, self.most_running = threading.Lock(), 0, 0

    def _graphql(self, query: str, variables: dict) -> dict:
        if "partitionKeysByDimension" in query:
            return {"assetNodeOrError": {"__typename": "AssetNode", "partitionKeysByDimension": [
                {"name": "source", "partitionKeys": self.known}, {"name": "variant", "partitionKeys": []}]}}
        assert "addDynamicPartition" in query and variables["name"] == "variants"
        self.partitions.append(variables["key"])
        return {"addDynamicPartition": {"__typename": "DuplicateDynamicPartitionError", "message": "exists"}}

    def launch(self, job: str, run_config: dict, tags: dict[str, str] | None = None) -> str:
        with self.lock:
            self.launched.append((job, run_config, dict(tags or {})))
            return f"run{len(self.launched)}"

    def wait(self, run_id: str, timeout_s: float, on_progress=None, poll_s: float = 0.25) -> dict:
        job, _, tags = self.launched[int(run_id[3:]) - 1]
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        time.sleep(self.run_s)
        with self.lock:
            self.running -= 1
        if job == EXPERIMENT_JOB and tags["variant"] in self.failing:
            raise RunFailed(run_id, "FAILURE", ["evaluation: labels do not match the documents"])
        return {}


def experiment(tmp_path: Path, variants: str = "[{name: default}, {name: c128, chunk_max_tokens: 128, chunk_overlap: 16}]",
               concurrency: int = 4):
    labels(tmp_path)
    return load_experiment(write(tmp_path, f"name: e1\nsources: [docs, wiki]\nlabels: labels\nconcurrency: {concurrency}\n"
                                           f"variants: {variants}\n"))


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "variants.yaml"
    monkeypatch.setenv("RAG_VARIANTS", str(path))
    return path


def test_run_registers_launches_per_variant_and_source_then_report(tmp_path, registry):
    client, lines = FakeClient(), []
    outcome = run_experiment(experiment(tmp_path), client, on_progress=lines.append)
    assert outcome.ok and outcome.registered == ["c128"] and set(load_registry()) == {"default", "c128"}
    assert client.partitions == ["default", "c128"]  # "already exists" is success
    jobs = [(job, tags.get("variant"), tags.get("dagster/partition")) for job, _, tags in client.launched]
    for variant in ("default", "c128"):
        mine = [j for j in jobs if j[1] == variant]
        assert mine == [(MODELS_JOB, variant, variant), (EXPERIMENT_JOB, variant, f"docs|{variant}"), (EXPERIMENT_JOB, variant, f"wiki|{variant}")]
    job, config, tags = client.launched[-1]
    assert job == REPORT_JOB and config == {"ops": {"experiment_report": {"config": {"experiment": "e1"}}}}
    # variants run concurrently: either may launch first, so pick the default variant's first source run
    run_config, tags = next((c, t) for j, c, t in client.launched if j == EXPERIMENT_JOB and t.get("variant") == "default")
    assert run_config == {"ops": {"evaluation": {"config": {"labels": str((tmp_path / "labels").resolve()), "split": "test"}}}}
    assert tags["experiment"] == "e1" and tags["dagster/partition/source"] == "docs" and tags["dagster/partition/variant"] == "default"
    assert all(len(v.run_ids) == 3 and v.status == "succeeded" for v in outcome.variants)
    assert "[c128] started run" in "\n".join(lines) and any(line.startswith("[c128] succeeded in ") for line in lines)


def test_failed_variant_is_recorded_and_the_others_go_on(tmp_path, registry):
    client, lines = FakeClient(failing={"c128"}), []
    outcome = run_experiment(experiment(tmp_path), client, on_progress=lines.append)
    by_name = {v.variant: v for v in outcome.variants}
    assert by_name["default"].status == "succeeded" and len(by_name["default"].run_ids) == 3
    assert by_name["c128"].status == "failed" and "labels do not match the documents" in by_name["c128"].error
    assert len(by_name["c128"].run_ids) == 2  # models, then the first source's run failed: the variant stopped there
    assert outcome.failed == ["c128"] and not outcome.ok and outcome.report_run_id  # the report compares what succeeded
    assert any(line.startswith("[c128] FAILED: run ") for line in lines)


def test_no_report_when_every_variant_failed(tmp_path, registry):
    client = FakeClient(failing={"default", "c128"})
    outcome = run_experiment(experiment(tmp_path), client)
    assert outcome.failed == ["default", "c128"] and "no variant succeeded" in outcome.report_error
    assert REPORT_JOB not in [job for job, _, _ in client.launched]


def test_at_most_concurrency_variants_at_once(tmp_path, registry):
    variants = "[" + ", ".join(f"{{name: v{i}, top_k: {i + 1}}}" for i in range(6)) + "]"
    client = FakeClient(run_s=0.05)
    outcome = run_experiment(experiment(tmp_path, variants, concurrency=2), client)
    assert outcome.ok and client.most_running == 2
    client = FakeClient(run_s=0.05)
    run_experiment(experiment(tmp_path / "again", variants), client, concurrency=3)  # the option overrides the file
    assert client.most_running == 3


def test_conflicting_variant_or_unknown_source_launch_nothing(tmp_path, registry):
    register([VariantSettings(name="c128", chunk_max_tokens=128, chunk_overlap=8)])
    client = FakeClient()
    with pytest.raises(VariantError, match="'c128' is registered with other settings .*chunk_overlap"):
        run_experiment(experiment(tmp_path), client)
    assert client.launched == [] and client.partitions == []

    client = FakeClient(sources=["docs"])
    with pytest.raises(ClientError, match=r"unknown source 'wiki' \(the platform at http://fake knows: docs\)"):
        run_experiment(experiment(tmp_path / "two", "[{name: default}, {name: new, top_k: 2}]"), client)
    assert client.launched == [] and client.partitions == [] and "new" not in load_registry()


def test_cli_run_with_a_bad_file_is_one_user_error(tmp_path, registry):
    import argparse

    from rag_assets.experiments import cli

    parser = argparse.ArgumentParser(prog="rag")
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["experiment", "run", str(tmp_path / "absent.yaml"), "--url", "http://127.0.0.1:9"])
    with pytest.raises(ClientError, match=r"absent.yaml: no such experiment file; fix the experiment file \(experiments/demo.yaml"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["experiment", "run", "x.yaml", "--concurrency", "0"])
