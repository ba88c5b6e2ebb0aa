"""The sources sensor never reads a config mistake as "every source was removed"; removed sources come back;
runs that failed for good are requested again, once. Real sensor, real Dagster instance, real run records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest
import yaml

import definitions
from rag_assets.ingest.partitions import SOURCES_PARTITION, partition_tags
from rag_assets.sources.edit import remove_sources
from rag_assets.sources.spec import SourcesFileError, load_sources
from resources.sources import SourcesResource
from sensors.discovery import Cursor
from sensors.nightly import nightly_reingest
from sensors.sources_sensor import sources_sensor
from sensor_ticks import sensor_tick

NAMES = ["alpha", "beta", "gamma", "delta"]
COMMENTED = """# Sources to ingest. Paths are relative to this file.
sources:
  # the team handbook
  - name: alpha
    kind: markdown
    paths: [docs/alpha]   # only this folder
  - name: beta
    kind: markdown
    paths: [docs/beta]
  - name: gamma
    kind: markdown
    paths:
      - docs/gamma
    description: kept as written
  - name: delta
    kind: markdown
    paths: [docs/delta]

# end of file
"""


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def sources_file(tmp_path: Path) -> Path:
    for name in NAMES:
        (tmp_path / "docs" / name).mkdir(parents=True)
        (tmp_path / "docs" / name / "a.md").write_text(f"# {name}\n\ntext of {name}\n")
    path = tmp_path / "sources.yaml"
    path.write_text(COMMENTED, encoding="utf-8")
    return path


def spec(name: str) -> dict:
    return {"name": name, "kind": "markdown", "paths": [f"docs/{name}"]}


def without(path: Path, name: str) -> dict:
    """The content of the sources file at `path` without source `name`, specs otherwise unchanged."""
    return {"sources": [s.model_dump(exclude_defaults=True) for s in load_sources(path).values() if s.name != name]}


def write(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def evaluate(instance: dg.DagsterInstance, sources_file: Path, cursor: str | None):
    """One tick of the real sensor; partition requests applied as the daemon would."""
    result, cursor_after = sensor_tick(instance, sources_file, cursor)
    if isinstance(result, dg.SkipReason):
        assert cursor_after == cursor  # a skipped tick keeps the cursor
    return result


def partitions(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_dynamic_partitions(SOURCES_PARTITION))


def ingested(result) -> dict[str, str]:
    return {r.tags["rag/source"]: r.run_key for r in result.run_requests if r.job_name == "ingest"}


def purged(result) -> list[str]:
    return [name for r in result.run_requests if r.job_name == "purge_job" for name in r.run_config["ops"]["purge_sources"]["config"]["sources"]]


def start(instance: dg.DagsterInstance, sources_file: Path) -> str:
    first = evaluate(instance, sources_file, None)
    assert set(ingested(first)) == set(NAMES) and partitions(instance) == set(NAMES)
    return first.cursor


MISTAKES = {
    "missing file": (lambda p: p.unlink(), "no such file"),
    "unreadable file (a folder)": (lambda p: (p.unlink(), p.mkdir()), "cannot read it"),
    "not UTF-8": (lambda p: p.write_bytes(b"\xff\xfe\x00sources"), "cannot read it"),
    "YAML typo": (lambda p: p.write_text(COMMENTED.replace("    kind: markdown\n    paths: [docs/beta]", "    kind: markdown\n   paths: [docs/beta]")), "YAML syntax error at line"),
    "half-written file": (lambda p: p.write_text(COMMENTED[: COMMENTED.index("paths: [docs/beta]") + 12]), "YAML syntax error at line"),
    "half-written entry": (lambda p: p.write_text(COMMENTED[: COMMENTED.index("kind: markdown\n    paths: [docs/beta]") + 8]), "sources[1] (name 'beta').kind"),
    "sources: with no entries": (lambda p: p.write_text("# all gone?\nsources:\n"), "declares no sources"),
    "sources: []": (lambda p: p.write_text("sources: []\n"), "declares no sources"),
    "empty file": (lambda p: p.write_text(""), "declares no sources"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_config_mistake_skips_with_its_reason_and_removes_nothing(instance, sources_file: Path, mistake: str):
    cursor = start(instance, sources_file)
    break_file, reason = MISTAKES[mistake]
    break_file(sources_file)
    result = evaluate(instance, sources_file, cursor)
    assert isinstance(result, dg.SkipReason), result
    assert reason in result.skip_message and str(sources_file) in result.skip_message
    assert "\n" not in result.skip_message
    assert partitions(instance) == set(NAMES)
    # fixed again: nothing to re-ingest, nothing was lost
    if sources_file.is_dir():
        sources_file.rmdir()
    sources_file.write_text(COMMENTED, encoding="utf-8")
    again = evaluate(instance, sources_file, cursor)
    assert not isinstance(again, dg.SkipReason) and again.run_requests == [] and partitions(instance) == set(NAMES)


def test_no_prefix_of_a_half_written_file_removes_more_than_half(instance, sources_file: Path):
    """Every cut of the file a crashed editor could leave: a skip, or at most half of the sources removed."""
    cursor = start(instance, sources_file)
    outcomes = {"skipped": 0, "removed some": 0}
    for cut in range(len(COMMENTED)):
        sources_file.write_text(COMMENTED[:cut], encoding="utf-8")
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"sources": SourcesResource(path=str(sources_file))}) as context:
            result = sources_sensor(context)
        if isinstance(result, dg.SkipReason):
            outcomes["skipped"] += 1
            continue
        removed = {k for r in result.dynamic_partitions_requests for k in r.partition_keys if isinstance(r, dg.DeleteDynamicPartitionsRequest)}
        assert len(removed) * 2 <= len(NAMES), (cut, removed)
        outcomes["removed some"] += bool(removed)
    assert outcomes["skipped"] > len(COMMENTED) // 2
    assert partitions(instance) == set(NAMES)


def test_removing_more_than_half_needs_confirmation_in_the_file(instance, sources_file: Path):
    cursor = start(instance, sources_file)
    write(sources_file, {"sources": [spec("alpha")]})
    result = evaluate(instance, sources_file, cursor)
    assert isinstance(result, dg.SkipReason)
    assert "confirm_removal: [beta, delta, gamma]" in result.skip_message and "rag sources remove" in result.skip_message
    assert partitions(instance) == set(NAMES)

    write(sources_file, {"sources": [spec("alpha")], "confirm_removal": ["beta", "gamma"]})  # one short
    result = evaluate(instance, sources_file, cursor)
    assert isinstance(result, dg.SkipReason) and "confirm_removal: [delta]" in result.skip_message

    write(sources_file, {"sources": [spec("alpha")], "confirm_removal": ["beta", "gamma", "delta"]})
    result = evaluate(instance, sources_file, cursor)
    assert partitions(instance) == {"alpha"} and purged(result) == ["beta", "delta", "gamma"]
    assert ingested(result) == {}


def test_removing_half_or_fewer_needs_no_confirmation(instance, sources_file: Path):
    cursor = start(instance, sources_file)
    write(sources_file, {"sources": [spec("alpha"), spec("beta")]})
    result = evaluate(instance, sources_file, cursor)
    assert partitions(instance) == {"alpha", "beta"} and purged(result) == ["delta", "gamma"]
    # one purge run per source, holding that source's slot in the run queue (`rag/source`)
    purges = [r for r in result.run_requests if r.job_name == "purge_job"]
    assert [(r.tags["rag/source"], r.run_config["ops"]["purge_sources"]["config"]["sources"]) for r in purges] == [
        ("delta", ["delta"]), ("gamma", ["gamma"])]
    assert len({r.run_key for r in purges}) == 2


def test_removing_every_source_needs_confirmation_even_for_one(instance, tmp_path: Path):
    path = tmp_path / "sources.yaml"
    (tmp_path / "docs" / "alpha").mkdir(parents=True)
    write(path, {"sources": [spec("alpha")]})
    cursor = evaluate(instance, path, None).cursor
    write(path, {"sources": []})
    result = evaluate(instance, path, cursor)
    assert isinstance(result, dg.SkipReason) and "confirm_removal: [alpha]" in result.skip_message
    write(path, {"sources": [], "confirm_removal": ["alpha"]})
    result = evaluate(instance, path, cursor)
    assert partitions(instance) == set() and purged(result) == ["alpha"]


def test_rag_sources_remove_edits_the_file_keeps_comments_and_confirms(instance, sources_file: Path):
    cursor = start(instance, sources_file)
    assert remove_sources(sources_file, ["beta", "gamma", "delta"]) == ["beta", "gamma", "delta"]
    text = sources_file.read_text()
    assert "# the team handbook" in text and "# only this folder" in text and "# end of file" in text
    assert "beta" not in text.split("confirm_removal")[0] and "kept as written" not in text
    assert list(load_sources(sources_file)) == ["alpha"]
    assert not list(sources_file.parent.glob(".sources.yaml.*"))  # no temporary file left behind
    result = evaluate(instance, sources_file, cursor)
    assert partitions(instance) == {"alpha"} and purged(result) == ["beta", "delta", "gamma"]

    assert remove_sources(sources_file, ["alpha"]) == ["alpha"]  # the last one
    result = evaluate(instance, sources_file, result.cursor)
    assert partitions(instance) == set() and purged(result) == ["alpha"]


def test_remove_sources_refuses_unknown_names_and_malformed_files(sources_file: Path):
    before = sources_file.read_text()
    with pytest.raises(KeyError, match="declared: alpha, beta, gamma, delta"):
        remove_sources(sources_file, ["alpha", "nope"])
    assert sources_file.read_text() == before
    sources_file.write_text(before + "  - name: [\n")
    with pytest.raises(SourcesFileError, match="YAML syntax error at line"):
        remove_sources(sources_file, ["alpha"])


def test_remove_sources_rewrites_a_one_line_list(tmp_path: Path):
    path = tmp_path / "sources.yaml"
    path.write_text("sources: [{name: a, kind: markdown}, {name: b, kind: markdown, sensitive: true}]\n")
    assert remove_sources(path, ["a"]) == ["a"]
    content = yaml.safe_load(path.read_text())
    assert content == {"sources": [{"name": "b", "kind": "markdown", "sensitive": True}], "confirm_removal": ["a"]}


def test_a_confirmation_left_for_a_re_added_source_is_refused(instance, sources_file: Path):
    """A stale confirmation would silently confirm that source's next removal: the file is refused until it goes."""
    cursor = start(instance, sources_file)
    remove_sources(sources_file, ["beta"])
    cursor = evaluate(instance, sources_file, cursor).cursor
    sources_file.write_text(sources_file.read_text().replace("sources:\n", "sources:\n  - {name: beta, kind: markdown, paths: [docs/beta]}\n", 1))
    result = evaluate(instance, sources_file, cursor)
    assert isinstance(result, dg.SkipReason) and "'beta' declared under sources and also listed under confirm_removal" in result.skip_message
    assert partitions(instance) == {"alpha", "gamma", "delta"}


def test_a_removed_source_added_again_is_ingested_again_with_a_new_run_key(instance, sources_file: Path):
    cursor = start(instance, sources_file)
    first = Cursor.parse(cursor)
    original = sources_file.read_text()
    write(sources_file, without(sources_file, "beta"))
    removed = evaluate(instance, sources_file, cursor)
    assert purged(removed) == ["beta"] and "beta" not in partitions(instance)
    assert removed.run_requests[0].tags["rag/source"] == "beta"  # queued behind any ingest run of beta

    sources_file.write_text(original)  # same name, same content
    back = evaluate(instance, sources_file, removed.cursor)
    assert list(ingested(back)) == ["beta"] and "beta" in partitions(instance)
    assert ingested(back)["beta"] != f"beta:{first.fingerprints['beta']}"  # the first run's key
    assert evaluate(instance, sources_file, back.cursor).run_requests == []

    write(sources_file, without(sources_file, "beta"))  # and once more, new content
    again = evaluate(instance, sources_file, back.cursor)
    (sources_file.parent / "docs" / "beta" / "a.md").write_text("# beta\n\nnew text\n")
    sources_file.write_text(original)
    third = evaluate(instance, sources_file, again.cursor)
    assert list(ingested(third)) == ["beta"]
    assert len({ingested(back)["beta"], ingested(third)["beta"]}) == 2
    assert len({r.run_key for r in removed.run_requests + again.run_requests if r.job_name == "purge_job"}) == 2


def test_a_re_added_source_waits_for_its_unfinished_purge(instance, sources_file: Path):
    cursor = start(instance, sources_file)
    original = sources_file.read_text()
    write(sources_file, without(sources_file, "beta"))
    removed = evaluate(instance, sources_file, cursor)
    request = next(r for r in removed.run_requests if r.job_name == "purge_job")
    purge = instance.create_run_for_job(definitions.defs.resolve_job_def("purge_job"), run_config=request.run_config,
                                        status=dg.DagsterRunStatus.STARTED)
    sources_file.write_text(original)
    waiting = evaluate(instance, sources_file, removed.cursor)
    assert ingested(waiting) == {} and "beta" in partitions(instance)
    instance.report_run_canceled(purge)  # finished (any end will do: the purge no longer runs)
    back = evaluate(instance, sources_file, waiting.cursor)
    assert list(ingested(back)) == ["beta"]


def test_a_source_is_removed_only_after_its_unfinished_ingest_run(instance, sources_file: Path):
    """Else the run could write the source's vectors into the index after its purge."""
    cursor = start(instance, sources_file)
    original = sources_file.read_text()
    job = definitions.defs.resolve_job_def("ingest")
    running = instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED, tags={**job.tags, "rag/source": "beta"})
    write(sources_file, without(sources_file, "beta"))
    waiting = evaluate(instance, sources_file, cursor)
    assert purged(waiting) == [] and "beta" in partitions(instance)
    sources_file.write_text(original)  # back before it was removed: nothing to re-ingest
    assert evaluate(instance, sources_file, waiting.cursor).run_requests == []

    write(sources_file, without(sources_file, "beta"))
    still = evaluate(instance, sources_file, waiting.cursor)
    assert purged(still) == []
    instance.report_run_failed(running)
    done = evaluate(instance, sources_file, still.cursor)
    assert purged(done) == ["beta"] and "beta" not in partitions(instance)


def test_an_old_format_cursor_keeps_working(instance, sources_file: Path):
    cursor = Cursor.parse(start(instance, sources_file))
    old = json.dumps(cursor.fingerprints)  # the first format: source -> fingerprint
    assert evaluate(instance, sources_file, old).run_requests == []
    doc = sources_file.parent / "docs" / "gamma" / "a.md"
    doc.write_text("# gamma\n\nchanged\n")
    os.utime(doc, (1, 1))
    assert list(ingested(evaluate(instance, sources_file, old))) == ["gamma"]


def failed_ingest_run(instance: dg.DagsterInstance, source: str, status: dg.DagsterRunStatus = dg.DagsterRunStatus.FAILURE,
                      parent: dg.DagsterRun | None = None, **tags: str) -> dg.DagsterRun:
    """A real ingest run record that started and then ended FAILURE or CANCELED (a retry of `parent` if given)."""
    job = definitions.defs.resolve_job_def("ingest")
    retry: dict[str, str] = {}
    if parent is not None:
        retry = {"dagster/retry_number": str(int(parent.tags.get("dagster/retry_number", "0")) + 1),
                 "dagster/parent_run_id": parent.run_id, "dagster/root_run_id": parent.root_run_id or parent.run_id}
    run = instance.create_run_for_job(
        job, status=dg.DagsterRunStatus.STARTED, tags={**job.tags, "rag/source": source, **partition_tags(source), **retry, **tags},
        root_run_id=parent and (parent.root_run_id or parent.run_id), parent_run_id=parent and parent.run_id,
    )
    if status == dg.DagsterRunStatus.FAILURE:
        instance.report_run_failed(run)
    else:
        instance.report_run_canceled(run)
    return instance.get_run_by_id(run.run_id)


def test_a_run_that_failed_for_good_is_requested_again_once(instance, sources_file: Path):
    cursor = start(instance, sources_file)
    failed_ingest_run(instance, "beta")  # no run retries on this instance: failed for good
    failed_ingest_run(instance, "gamma", dg.DagsterRunStatus.CANCELED)
    tick = evaluate(instance, sources_file, cursor)
    assert sorted(ingested(tick)) == ["beta", "gamma"]
    assert all(r.run_key.endswith(":missed") and r.tags["rag/trigger"] == "missed" for r in tick.run_requests)

    assert evaluate(instance, sources_file, tick.cursor).run_requests == []  # not again the next tick
    failed_ingest_run(instance, "beta")  # the relaunched run fails too: not relaunched every tick
    later = evaluate(instance, sources_file, tick.cursor)
    assert later.run_requests == []

    doc = sources_file.parent / "docs" / "beta" / "a.md"  # a change gives it one more chance
    doc.write_text("# beta\n\nfixed\n")
    os.utime(doc, (2, 2))
    changed = evaluate(instance, sources_file, later.cursor)
    failed_ingest_run(instance, "beta")
    after = evaluate(instance, sources_file, changed.cursor)
    assert list(ingested(changed)) == ["beta"] and list(ingested(after)) == ["beta"]
    assert ingested(after)["beta"] == ingested(changed)["beta"] + ":missed"


def test_a_run_that_dagster_will_retry_is_left_to_dagster(sources_file: Path):
    """With run retries on (as `rag dev` sets them), Dagster's own verdict decides; only the last retry's failure counts."""
    with dg.instance_for_test(overrides={"run_retries": {"enabled": True}}) as instance:
        cursor = start(instance, sources_file)
        first = failed_ingest_run(instance, "beta")
        assert first.tags.get("dagster/will_retry") == "true"  # set by Dagster when the run failed
        assert evaluate(instance, sources_file, cursor).run_requests == []
        second = failed_ingest_run(instance, "beta", parent=first)
        assert second.tags.get("dagster/will_retry") == "true"
        assert evaluate(instance, sources_file, cursor).run_requests == []
        last = failed_ingest_run(instance, "beta", parent=second)  # the job allows two retries
        assert last.tags.get("dagster/will_retry") == "false"
        assert list(ingested(evaluate(instance, sources_file, cursor))) == ["beta"]


def test_the_nightly_schedule_skips_a_broken_sources_file(instance, sources_file: Path):
    sources_file.write_text("sources: [\n")
    with dg.build_schedule_context(instance=instance, resources={"sources": SourcesResource(path=str(sources_file))}) as context:
        result = nightly_reingest(context)
    assert isinstance(result, dg.SkipReason) and "YAML syntax error" in result.skip_message


@pytest.mark.slow
def test_a_re_added_source_gets_its_vectors_back_with_the_same_ids(workspace, tmp_path: Path):
    """Through the sensor's own requests: ingest, remove (purge), add again, ingest: the same ids in Milvus."""
    from rag_assets.index_store import ids_for_source
    from rag_assets.storage import collection_name
    from rag_assets.inference.sql.resource import WarehouseResource
    from rag_assets.ingest.purge import purge_job

    for name in ("keep", "gone"):
        (tmp_path / name).mkdir()
        for topic in ("vector stores", "hybrid search"):
            (tmp_path / name / f"{topic[:6]}.md").write_text(f"# {topic}\n\nThe {name} source explains {topic}.\n")
    specs = [{"name": name, "kind": "markdown", "paths": [str(tmp_path / name)]} for name in ("keep", "gone")]
    workspace.write_sources(specs)
    resources = {**workspace.resources(), "warehouse_db": WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))}

    def ids() -> set[str]:
        client = resources["milvus"].client()
        return ids_for_source(client, collection_name(resources["embedder"].model_id), "gone")

    first = evaluate(workspace.instance, workspace.sources_file, None)
    assert set(ingested(first)) == {"keep", "gone"}
    workspace.materialize("gone")  # what the requested run does
    before = ids()
    assert len(before) >= 2

    workspace.write_sources(specs[:1])
    removed = evaluate(workspace.instance, workspace.sources_file, first.cursor)
    request = next(r for r in removed.run_requests if r.job_name == "purge_job")
    assert purge_job.execute_in_process(run_config=request.run_config, resources=resources, instance=workspace.instance).success
    assert ids() == set()

    workspace.write_sources(specs)
    back = evaluate(workspace.instance, workspace.sources_file, removed.cursor)
    assert list(ingested(back)) == ["gone"] and ingested(back)["gone"] != ingested(first)["gone"]
    workspace.materialize("gone")
    assert ids() == before
