"""The real pipeline on a Dagster instance stored in PostgreSQL (`dagster-postgres`), read back from Postgres.

A throwaway server (tests/pg_server.py) per module, a database per test. The sources sensor's tick adds the
dynamic partitions; the `ingest` job runs its run requests, two at once, each in its own process as Dagster's
run workers do (two in-process runs in threads of one process deadlock in Dagster's logging setup, whatever
the storage); runs, events, partitions and asset check executions are then read back with SQL and through
the instance API.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import deserialize_value, serialize_value

from rag_assets.devserver import sqlalchemy_postgres_url
from rag_assets.ingest.partitions import SOURCES_PARTITION, VARIANTS_PARTITION, partition_key
from rag_assets.jobs import INGEST_ASSETS, ingest_job
from rag_assets.pipeline import INGEST_ASSETS as INGEST_ASSET_DEFS, QUIET_LOGS, Workspace
from rag_assets.variants import DEFAULT_VARIANT
from sensor_ticks import sensor_tick

pytestmark = pytest.mark.slow

SOURCES = {
    "alpha": {"a1.md": "# Alpha\n\nMilvus stores dense vectors in HNSW indexes.\n", "a2.md": "# Alpha two\n\nBM25 ranks sparse terms.\n"},
    "beta": {"b1.md": "# Beta\n\nDagster models pipelines as assets with lineage.\n"},
}
CHECKS = {("documents", "all_inputs_loaded"), ("chunks", "no_empty_chunks"), ("chunks", "within_token_limit"),
          ("embeddings", "dimension_matches_model"), ("index", "count_matches_chunks")}


def postgres_overrides(url: str) -> dict:
    """Dagster storage on the database at `url` (its driver named: SQLAlchemy 2.1 reads a bare URL as psycopg 3)."""
    return {"storage": {"postgres": {"postgres_url": sqlalchemy_postgres_url(url)}}}


def query(url: str, sql: str) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    conn.close()
    return rows


def write_sources(tmp_path: Path, ws: Workspace) -> None:
    specs = []
    for name, docs in SOURCES.items():
        folder = tmp_path / name
        folder.mkdir()
        for file, text in docs.items():
            (folder / file).write_text(text, encoding="utf-8")
        specs.append({"name": name, "kind": "markdown", "paths": [str(folder)]})
    ws.write_sources(specs)


_start: multiprocessing.synchronize.Barrier | None = None  # set in each worker process: the runs start together


def _set_start_barrier(barrier: multiprocessing.synchronize.Barrier) -> None:
    global _start
    _start = barrier


def run_ingest(instance_ref: str, root: str, cache_dir: str, milvus_uri: str, key: str, tags: dict[str, str]) -> tuple[str, bool]:
    """In a worker process: one of the sensor's run requests, executed as the `ingest` job (its job name,
    partition and tags) on the instance `instance_ref` describes."""
    with dg.DagsterInstance.from_ref(deserialize_value(instance_ref, InstanceRef)) as instance:
        ws = Workspace(root=Path(root), cache_dir=Path(cache_dir), milvus_uri=milvus_uri, instance=instance)
        job = dg.Definitions(assets=INGEST_ASSET_DEFS, jobs=[ingest_job], resources=ws.resources()).resolve_job_def(ingest_job.name)
        assert _start is not None
        _start.wait(timeout=300)
        result = job.execute_in_process(partition_key=key, tags=tags, instance=instance, run_config=QUIET_LOGS)
        return result.run_id, result.success


def test_sensor_partitions_concurrent_runs_and_checks_are_recorded_in_postgres(
        pg_url: str, tmp_path: Path, milvus_server: str, embedding_cache: Path):
    with dg.instance_for_test(overrides=postgres_overrides(pg_url)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        ws = Workspace(root=tmp_path / "ws", cache_dir=embedding_cache, milvus_uri=milvus_server, instance=instance)
        write_sources(tmp_path, ws)

        first, _ = sensor_tick(instance, ws.sources_file, None)
        ingest = sorted((r for r in first.run_requests if r.job_name == ingest_job.name), key=lambda r: r.partition_key)
        assert [r.partition_key for r in ingest] == ["alpha|default", "beta|default"]
        assert instance.get_dynamic_partitions(SOURCES_PARTITION) == ["alpha", "beta"]
        assert instance.get_dynamic_partitions(VARIANTS_PARTITION) == [DEFAULT_VARIANT]

        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(ingest), mp_context=spawn, initializer=_set_start_barrier,
                                 initargs=(spawn.Barrier(len(ingest)),)) as pool:
            runs = [pool.submit(run_ingest, serialize_value(instance.get_ref()), str(ws.root), str(embedding_cache), milvus_server,
                                str(r.partition_key), dict(r.tags)) for r in ingest]
            results = [run.result(timeout=600) for run in runs]
        assert all(success for _, success in results)
        run_ids = {run_id for run_id, _ in results}

        # A second tick reads those runs back (its query of ingest runs goes to Postgres): nothing to do.
        second, _ = sensor_tick(instance, ws.sources_file, first.cursor)
        assert second.run_requests == []

    # What Postgres holds, read with SQL.
    runs = {row[0]: row[1:] for row in query(pg_url, "SELECT run_id, pipeline_name, status, start_time, end_time FROM runs")}
    assert set(runs) == run_ids
    assert {(name, status) for name, status, *_ in runs.values()} == {(ingest_job.name, "SUCCESS")}
    (start_a, end_a), (start_b, end_b) = [(started, ended) for *_, started, ended in runs.values()]
    assert start_a < end_b and start_b < end_a, "the two runs did not overlap"
    tags = query(pg_url, "SELECT run_id, value FROM run_tags WHERE key = 'dagster/partition'")
    assert sorted(value for _, value in tags) == ["alpha|default", "beta|default"]
    materialized = query(pg_url, "SELECT asset_key, partition, count(*) FROM event_logs WHERE dagster_event_type = "
                                 "'ASSET_MATERIALIZATION' GROUP BY asset_key, partition")
    assert {(dg.AssetKey.from_db_string(key).to_user_string(), partition, n) for key, partition, n in materialized} == {
        (asset, f"{source}|{DEFAULT_VARIANT}", 1) for asset in INGEST_ASSETS for source in SOURCES}
    assert sorted(query(pg_url, "SELECT partitions_def_name, partition FROM dynamic_partitions")) == [
        (SOURCES_PARTITION, "alpha"), (SOURCES_PARTITION, "beta"), (VARIANTS_PARTITION, DEFAULT_VARIANT)]
    checks = query(pg_url, "SELECT asset_key, check_name, run_id, execution_status FROM asset_check_executions")
    assert sorted((dg.AssetKey.from_db_string(key).to_user_string(), name, run, status) for key, name, run, status in checks) == sorted(
        (asset, name, run, "SUCCEEDED") for asset, name in CHECKS for run in run_ids)

    # The same, through a new instance on that database (as the webserver or the daemon would read it).
    with dg.instance_for_test(overrides=postgres_overrides(pg_url)) as reader:
        assert reader.get_dynamic_partitions(SOURCES_PARTITION) == ["alpha", "beta"]
        keys = {source: str(partition_key(source)) for source in SOURCES}
        for asset in INGEST_ASSETS:
            assert reader.get_materialized_partitions(dg.AssetKey(asset)) == set(keys.values())
            for source, key in keys.items():
                records = reader.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=5).records
                assert len(records) == 1 and records[0].run_id in run_ids
                if asset == "documents":
                    assert records[0].asset_materialization.metadata["documents"].value == len(SOURCES[source])
        for asset, name in CHECKS:
            history = reader.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(dg.AssetKey(asset), name), limit=10)
            assert {h.run_id for h in history} == run_ids and {h.status.value for h in history} == {"SUCCEEDED"}
        assert {r.run_id for r in reader.get_runs(filters=dg.RunsFilter(tags={"rag/trigger": "sensor"}))} == run_ids
