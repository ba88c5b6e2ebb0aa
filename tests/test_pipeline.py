"""The ingestion assets materialized in-process (ephemeral instance, real Milvus Lite, real model)."""

import os
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from fixtures_bad_inputs import make_bad_inputs
from rag_assets.index_store import ids_for_source
from rag_assets.storage import collection_name
from rag_assets.inference.sql.resource import WarehouseResource
from rag_assets.ingest.purge import purge_job
from rag_assets.pipeline import Workspace
from rag_assets.retrieval import RetrievalSettings, Retriever

pytestmark = pytest.mark.slow


def write_docs(folder: Path, docs: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")


DOCS = {
    "milvus.md": "# Milvus\n\nMilvus stores dense vectors in HNSW indexes.\n\n## BM25\n\nA sparse field is computed by the BM25 function.\n",
    "dagster.md": "# Dagster\n\nDagster models pipelines as software-defined assets with lineage.\n",
    "duckdb.md": "# DuckDB\n\nDuckDB is an in-process analytical SQL database.\n",
}


def stored_ids(ws: Workspace, source: str) -> set[str]:
    res = ws.resources()
    client = res["milvus"].client()
    return ids_for_source(client, collection_name(res["embedder"].model_id), source)


def chunk_ids(ws: Workspace, source: str) -> set[str]:
    return set(pl.read_parquet(ws.root / "assets" / "chunks" / f"{source}.parquet")["chunk_id"])


def test_materialize_twice_gives_the_same_collection(workspace: Workspace, tmp_path: Path):
    write_docs(tmp_path / "docs", DOCS)
    workspace.write_sources([{"name": "team-docs", "kind": "markdown", "paths": [str(tmp_path / "docs")]}])
    first = workspace.materialize("team-docs")
    ids_first = stored_ids(workspace, "team-docs")
    assert ids_first == chunk_ids(workspace, "team-docs") and len(ids_first) >= 3
    assert first.metadata["index"]["inserted"] == len(ids_first)
    assert all(first.checks.values()), first.checks

    second = workspace.materialize("team-docs")
    assert stored_ids(workspace, "team-docs") == ids_first
    assert second.metadata["index"] | {} and second.metadata["index"]["inserted"] == 0
    assert second.metadata["index"]["unchanged"] == len(ids_first)
    assert second.metadata["embeddings"]["embedded_now"] == 0


def test_changed_document_is_the_only_one_re_embedded_and_removed_one_leaves_no_vectors(workspace: Workspace, tmp_path: Path):
    write_docs(tmp_path / "docs", DOCS)
    workspace.write_sources([{"name": "team-docs", "kind": "markdown", "paths": [str(tmp_path / "docs")]}])
    workspace.materialize("team-docs")
    before = stored_ids(workspace, "team-docs")

    (tmp_path / "docs" / "duckdb.md").write_text("# DuckDB\n\nDuckDB reads Parquet files directly with SQL.\n", encoding="utf-8")
    (tmp_path / "docs" / "dagster.md").unlink()
    report = workspace.materialize("team-docs")
    after = stored_ids(workspace, "team-docs")
    assert after == chunk_ids(workspace, "team-docs")
    assert report.metadata["embeddings"]["embedded_now"] == 1
    assert report.metadata["index"]["inserted"] == 1
    assert report.metadata["index"]["deleted"] == 2  # the old DuckDB chunk and the Dagster chunk
    texts = " ".join(pl.read_parquet(workspace.root / "assets" / "chunks" / "team-docs.parquet")["text"])
    assert "Dagster models pipelines" not in texts and len(before & after) == len(after) - 1


def test_bad_inputs_are_recorded_and_the_rest_is_ingested(workspace: Workspace, tmp_path: Path):
    expected = make_bad_inputs(tmp_path / "inbox")
    workspace.write_sources([{"name": "inbox", "kind": "files", "paths": [str(tmp_path / "inbox")]}])
    report = workspace.materialize("inbox")
    docs = pl.read_parquet(workspace.root / "assets" / "documents" / "inbox.parquet")
    failed = dict(docs.filter(pl.col("error").is_not_null()).select("locator", "error").iter_rows())
    loaded = set(docs.filter(pl.col("error").is_null())["locator"])
    assert loaded == set(expected["documents"])
    assert set(failed) == set(expected["failures"])
    for locator, reason_start in expected["failures"].items():
        assert failed[locator].startswith(reason_start), (locator, failed[locator])
    meta = report.metadata["documents"]
    assert meta["failed"] == len(expected["failures"]) and meta["documents"] == len(expected["documents"])
    shown = " ".join(str(record.data) for record in meta["failures"].records)  # the table in the UI
    assert "too large" in shown and "invalid UTF-8" in shown
    assert report.checks["documents:all_inputs_loaded"] is False  # the WARN check flags them
    assert report.checks["index:count_matches_chunks"] is True
    indexed_docs = {h for h in pl.read_parquet(workspace.root / "assets" / "chunks" / "inbox.parquet")["doc_id"]}
    assert indexed_docs == set(docs.filter(pl.col("error").is_null())["doc_id"])


def test_two_sources_never_collide_and_filters_select_one(workspace: Workspace, tmp_path: Path):
    write_docs(tmp_path / "a", DOCS)
    write_docs(tmp_path / "b", DOCS)  # identical content in another source
    workspace.write_sources([
        {"name": "a", "kind": "markdown", "paths": [str(tmp_path / "a")]},
        {"name": "b", "kind": "markdown", "paths": [str(tmp_path / "b")]},
    ])
    workspace.materialize("a")
    report_b = workspace.materialize("b")
    assert report_b.metadata["embeddings"]["embedded_now"] == 0  # same texts: cache hits across sources
    ids_a, ids_b = stored_ids(workspace, "a"), stored_ids(workspace, "b")
    assert ids_a and ids_b and ids_a.isdisjoint(ids_b)
    res = workspace.resources()
    retriever = Retriever(res["milvus"].client(), collection_name(res["embedder"].model_id), res["embedder"].embed_queries)
    for mode in ("dense", "bm25", "hybrid"):
        hits = retriever.search(["which database is in-process?"], RetrievalSettings(mode=mode, top_k=5), sources=["b"])[0]
        assert hits and {h.source for h in hits} == {"b"}
        assert hits[0].title == "DuckDB", (mode, hits[0])


def test_purge_job_removes_a_sources_vectors_and_files(workspace: Workspace, tmp_path: Path):
    write_docs(tmp_path / "docs", DOCS)
    workspace.write_sources([{"name": "gone", "kind": "markdown", "paths": [str(tmp_path / "docs")]}])
    workspace.materialize("gone")
    assert stored_ids(workspace, "gone")
    result = purge_job.execute_in_process(
        run_config={"ops": {"purge_sources": {"config": {"sources": ["gone"]}}}},
        resources={**workspace.resources(), "warehouse_db": WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))},
        instance=workspace.instance,
    )
    assert result.success
    assert stored_ids(workspace, "gone") == set()
    assert not list((workspace.root / "assets").rglob("gone.parquet"))


def test_a_source_whose_inputs_all_vanish_fails_instead_of_emptying_the_index(workspace: Workspace, tmp_path: Path):
    write_docs(tmp_path / "share", DOCS)
    workspace.write_sources([{"name": "share", "kind": "markdown", "paths": [str(tmp_path / "share")]}])
    workspace.materialize("share")
    before = stored_ids(workspace, "share")
    (tmp_path / "share").rename(tmp_path / "unmounted")
    with pytest.raises(dg.Failure, match="no input could be read"):
        workspace.materialize("share")
    assert stored_ids(workspace, "share") == before
