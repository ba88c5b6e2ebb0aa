"""The discovery sensor and the nightly schedule, evaluated with Dagster's own contexts."""

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import yaml

from rag_assets.ingest.partitions import SOURCES_PARTITION
from resources.sources import SourcesResource
from sensors.discovery import Cursor
from sensors.nightly import nightly_reingest
from sensors.sources_sensor import sources_sensor
from sensor_ticks import sensor_tick


def write_sources(path: Path, sources: list[dict]) -> None:
    path.write_text(yaml.safe_dump({"sources": sources}), encoding="utf-8")


def tick(instance: dg.DagsterInstance, sources_file: Path, cursor: str | None) -> dg.SensorResult:
    return sensor_tick(instance, sources_file, cursor)[0]


def test_sensor_adds_ingests_changed_only_and_removes(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "a.md"
    doc.write_text("# A\n\nalpha\n")
    sources_file = tmp_path / "sources.yaml"
    write_sources(sources_file, [
        {"name": "docs", "kind": "markdown", "paths": ["docs"]},
        {"name": "wiki", "kind": "html", "urls": ["http://127.0.0.1:1/wiki"]},
    ])
    with dg.instance_for_test() as instance:
        first = tick(instance, sources_file, None)
        assert sorted((r.job_name, r.partition_key) for r in first.run_requests) == [
            ("ingest", "docs|default"), ("ingest", "wiki|default"), ("models", "default")]  # + the default variant's model cards
        assert set(instance.get_dynamic_partitions(SOURCES_PARTITION)) == {"docs", "wiki"}

        second = tick(instance, sources_file, first.cursor)
        assert second.run_requests == [] and not second.dynamic_partitions_requests

        time.sleep(0.01)
        doc.write_text("# A\n\nalpha changed\n")
        os.utime(doc, None)
        third = tick(instance, sources_file, second.cursor)
        assert [r.partition_key for r in third.run_requests] == ["docs|default"]
        assert third.run_requests[0].run_key not in {r.run_key for r in first.run_requests}

        write_sources(sources_file, [{"name": "docs", "kind": "markdown", "paths": ["docs"]}])
        fourth = tick(instance, sources_file, third.cursor)
        assert instance.get_dynamic_partitions(SOURCES_PARTITION) == ["docs"]
        purge = [r for r in fourth.run_requests if r.job_name == "purge_job"]
        assert len(purge) == 1
        assert purge[0].run_config["ops"]["purge_sources"]["config"]["sources"] == ["wiki"]
        assert Cursor.parse(fourth.cursor).fingerprints.keys() == {"docs"}


def test_sensor_skips_a_broken_sources_file_without_dropping_partitions(tmp_path: Path):
    sources_file = tmp_path / "sources.yaml"
    write_sources(sources_file, [{"name": "docs", "kind": "markdown", "paths": ["docs"]}])
    with dg.instance_for_test() as instance:
        first = tick(instance, sources_file, None)
        sources_file.write_text("sources: [ {name: 'bad name!', kind: nope} ]")
        with dg.build_sensor_context(instance=instance, cursor=first.cursor, resources={"sources": SourcesResource(path=str(sources_file))}) as context:
            result = sources_sensor(context)
        assert isinstance(result, dg.SkipReason) and "cannot use the sources file" in result.skip_message
        assert "sources[0] (name 'bad name!').name" in result.skip_message
        assert instance.get_dynamic_partitions(SOURCES_PARTITION) == ["docs"]


def test_nightly_schedule_requests_each_scheduled_source(tmp_path: Path):
    sources_file = tmp_path / "sources.yaml"
    write_sources(sources_file, [
        {"name": "docs", "kind": "markdown", "paths": ["docs"]},
        {"name": "manual-one", "kind": "markdown", "paths": ["docs"], "schedule": "manual"},
    ])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(SOURCES_PARTITION, ["docs", "manual-one"])
        with dg.build_schedule_context(
            instance=instance, resources={"sources": SourcesResource(path=str(sources_file))},
            scheduled_execution_time=datetime(2026, 11, 24, 3, tzinfo=timezone.utc),
        ) as context:
            requests = nightly_reingest(context)
        assert [r.partition_key for r in requests] == ["docs|default"]
        assert requests[0].run_key == "nightly:docs:2026-11-24"
