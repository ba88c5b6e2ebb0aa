"""The Dagster instance files on PostgreSQL: `rag dev`'s switch (RAG_DAGSTER_POSTGRES_URL / --postgres-url) and the
production deploy/dagster.yaml, each checked against Dagster's instance schema and opened on a live server."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher
from dagster_postgres import DagsterPostgresStorage

from rag_assets.cli import build_parser
from rag_assets.devserver import (DAGSTER_YAML, POSTGRES_URL_ENV, dagster_yaml, ensure_dagster_yaml,
                                  sqlalchemy_postgres_url)

DEPLOY_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


def storage_of(home: Path) -> dict:
    """The `storage` section of the instance config in `home` as Dagster validates it ({} when absent: SQLite)."""
    config, _ = dagster_instance_config(str(home))
    return config.get("storage") or {}


def tables(url: str) -> set[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        names = {row[0] for row in cur.fetchall()}
    conn.close()
    return names


def test_rag_dev_writes_sqlite_by_default_and_postgres_when_switched(tmp_path: Path):
    path = tmp_path / "dagster.yaml"
    assert ensure_dagster_yaml(path) is None and path.read_text() == DAGSTER_YAML
    assert storage_of(tmp_path) == {}  # Dagster's default: SQLite under DAGSTER_HOME

    assert ensure_dagster_yaml(path, postgres=True) is None  # a file `rag dev` wrote: switched in place
    assert yaml.safe_load(path.read_text())["storage"] == {"postgres": {"postgres_url": {"env": POSTGRES_URL_ENV}}}
    assert POSTGRES_URL_ENV in path.read_text() and "postgresql://" not in path.read_text()  # the URL's password stays out
    assert ensure_dagster_yaml(path) is None and path.read_text() == DAGSTER_YAML  # and back

    mine = dagster_yaml(postgres=True) + "python_logs:\n  python_log_level: INFO\n"
    path.write_text(mine)
    warning = ensure_dagster_yaml(path)
    assert warning and "not written by `rag dev`" in warning and path.read_text() == mine


def test_the_url_names_psycopg2_and_the_flag_defaults_to_the_variable(monkeypatch: pytest.MonkeyPatch):
    assert sqlalchemy_postgres_url("postgresql://u:p@h:5432/d") == "postgresql+psycopg2://u:p@h:5432/d"
    assert sqlalchemy_postgres_url("postgres://u@h/d") == "postgresql+psycopg2://u@h/d"
    assert sqlalchemy_postgres_url("postgresql+psycopg2://u@h/d") == "postgresql+psycopg2://u@h/d"
    monkeypatch.delenv(POSTGRES_URL_ENV, raising=False)
    assert build_parser().parse_args(["dev"]).postgres_url == ""
    monkeypatch.setenv(POSTGRES_URL_ENV, "postgresql://u@h/d")
    assert build_parser().parse_args(["dev"]).postgres_url == "postgresql://u@h/d"
    assert build_parser().parse_args(["dev", "--postgres-url", "postgresql://x@y/z"]).postgres_url == "postgresql://x@y/z"


def test_rag_dev_postgres_instance_opens_on_a_live_server(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch):
    ensure_dagster_yaml(tmp_path / "dagster.yaml", postgres=True)
    monkeypatch.setenv(POSTGRES_URL_ENV, sqlalchemy_postgres_url(pg_url))  # as DevStack passes it to `dagster dev`
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "DevRunCoordinator"
        assert type(instance.run_launcher).__name__ == "DevRunLauncher"
        instance.add_dynamic_partitions("sources", ["docs"])
        assert instance.get_dynamic_partitions("sources") == ["docs"]
    assert {"runs", "event_logs", "dynamic_partitions", "asset_check_executions", "jobs"} <= tables(pg_url)


def deploy_env(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """DAGSTER_PG_* as the pods get them, pointing at `url`'s server and database."""
    parts = urlparse(url)
    for name, value in {"HOST": parts.hostname, "PORT": str(parts.port), "DB": parts.path.lstrip("/"),
                        "USER": parts.username, "PASSWORD": "unused-with-trust-auth"}.items():
        monkeypatch.setenv(f"DAGSTER_PG_{name}", value)


def test_deploy_instance_validates_and_opens_on_a_live_server(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch):
    deploy_env(monkeypatch, pg_url)
    shutil.copy(DEPLOY_YAML, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster's instance schema
    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])  # env vars resolved
    assert storage.success, storage.errors
    assert storage.value["postgres_db"]["port"] == urlparse(pg_url).port
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    launcher = process_config(K8sRunLauncher.config_type(), config["run_launcher"]["config"])  # the launcher's own schema
    assert launcher.success, launcher.errors
    limits = {(limit["key"], str(limit.get("value"))) for limit in config["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert {("dagster/partition", "{'applyLimitPerUniqueValue': True}"), ("rag/source", "{'applyLimitPerUniqueValue': True}"),
            ("experiment", "None"), ("rag/node", "gpu")} <= limits

    # Opened for real, compute logs in the test's folder instead of the /rag volume; the K8sRunLauncher is
    # built only when a run is launched (it needs a cluster).
    raw = yaml.safe_load(DEPLOY_YAML.read_text())
    raw["compute_logs"]["config"]["base_dir"] = str(tmp_path / "compute_logs")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(raw))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.compute_log_manager).__name__ == "LocalComputeLogManager"
        assert instance.run_retries_enabled and instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 600
        instance.add_dynamic_partitions("variants", ["default"])
    assert {"runs", "event_logs", "dynamic_partitions"} <= tables(pg_url)
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT partitions_def_name, partition FROM dynamic_partitions")
        assert cur.fetchall() == [("variants", "default")]
    conn.close()


def test_deploy_instance_refuses_a_missing_credential(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch):
    deploy_env(monkeypatch, pg_url)
    monkeypatch.delenv("DAGSTER_PG_HOST")
    shutil.copy(DEPLOY_YAML, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert not storage.success and "DAGSTER_PG_HOST" in str(storage.errors)


def test_rag_dev_with_an_unreachable_postgres_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    from rag_assets.cli import main
    from rag_assets.devserver import free_port

    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [{"name": "docs", "kind": "markdown", "paths": [str(tmp_path)]}]}))
    closed = free_port()
    code = main(["dev", "--home", str(tmp_path / "home"), "--sources", str(sources), "--workspace", str(DEPLOY_YAML.parents[1] / "workspace.yaml"),
                 "--port", str(free_port()), "--milvus-port", str(free_port()),
                 "--postgres-url", f"postgresql://dagster:s3cret@127.0.0.1:{closed}/dagster"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{closed}/dagster" in err and "--postgres-url" in err and "s3cret" not in err
