"""A purged source leaves nothing behind: every file under RAG_HOME, DAGSTER_HOME and the Milvus data
directory is scanned, byte for byte and decoded (Parquet columns, DuckDB tables), for marker strings
that only the purged sources' text holds (one sensitive source, one public one whose text the warehouse
and the schema index's sample values do hold).

Real parts: a persistent Dagster instance, a `milvus-lite server` with its own data directory, the
local embedding model, the real ingest assets, warehouse, schema index, `ask_job` and `purge_job`;
the LLM is a loopback OpenAI-compatible server pinned as in-house (`external: false`), whose answers
quote the sources they were given, so the answer and the run's event log carry the marker.
"""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

from lite_server import milvus_lite_server
from loopback.openai_faults import OpenAIFaultServer
from rag_assets.index_store import count_for_source, count_rows, ids_for_source
from rag_assets.storage import collection_name
from rag_assets.inference.ask_job import ask_job
from rag_assets.inference.results import source_tag
from rag_assets.inference.sql.assets import schema_index, warehouse
from rag_assets.inference.sql.resource import WarehouseResource
from rag_assets.ingest.partitions import SOURCES_PARTITION, VARIANTS_PARTITION, partition_key
from rag_assets.variants import DEFAULT_VARIANT
from rag_assets.ingest.purge import purge_job
from rag_assets.io_manager import PolarsParquetIOManager
from rag_assets.pipeline import INGEST_ASSETS, QUIET_LOGS
from rag_assets.retrieval import RetrievalSettings, Retriever
from resources import EmbedderResource, MilvusResource, SourcesResource
from resources.llm import LLMResource

pytestmark = pytest.mark.slow

MARKER = "ZQX-7731-marker"
PUBLIC_MARKER = "PUB-4419-marker"
SECRET_DOCS = {
    "payroll.md": f"# Payroll archive\n\nThe vault of the payroll archive opens with the code {MARKER}; keep it private.\n",
    "salaries.md": f"# Salaries\n\nSalary bands are reviewed each spring; the audit reference is {MARKER}.\n",
}
OLD_DOCS = {"notes.md": f"# Notes {PUBLIC_MARKER}\n\nOld meeting notes about the {PUBLIC_MARKER} launch.\n"}
PUBLIC_DOCS = {
    "milvus.md": "# Milvus\n\nMilvus stores dense vectors in HNSW indexes.\n\n## BM25\n\nA sparse field is computed by the BM25 function.\n",
    "duckdb.md": "# DuckDB\n\nDuckDB is an in-process analytical SQL database.\n",
}


def _parquet_hits(path: Path, needle: str) -> bool:
    table = pq.read_table(path)
    for column in table.columns:
        for value in column.to_pylist():
            if needle in repr(value):
                return True
    return False


def _duckdb_hits(path: Path, needle: str) -> bool:
    with duckdb.connect(str(path), read_only=True) as con:
        columns = con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE data_type = 'VARCHAR' "
                              "AND schema_name = 'main' AND database_name = current_database()").fetchall()
        return any(con.execute(f'SELECT count(*) FROM "{t}" WHERE contains("{c}", ?)', [needle]).fetchone()[0] for t, c in columns)


def marker_hits(roots: list[Path], needle: str = MARKER) -> list[str]:
    """Every file under `roots` that holds `needle`: in its raw bytes, or once decoded (gzip, Parquet
    columns, DuckDB tables: compression would hide the bytes)."""
    raw = needle.encode()
    hits = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            found = raw in data
            if not found and data[:2] == b"\x1f\x8b":
                found = raw in gzip.decompress(data)
            if not found and data[:4] == b"PAR1":
                found = _parquet_hits(path, needle)
            if not found and data[8:12] == b"DUCK":
                found = _duckdb_hits(path, needle)
            if found:
                hits.append(str(path))
    return hits


@pytest.fixture
def milvus_dir(tmp_path: Path):
    """A `milvus-lite server` on loopback whose data directory the test scans; yields (uri, data dir)."""
    data = tmp_path / "milvus_data"
    data.mkdir()
    with milvus_lite_server(data) as uri:
        yield uri, data


def quote_sources(prompt: str) -> str:
    """The loopback model: an answer quoting the numbered sources it was given; a rewrite otherwise."""
    if "Sources:" in prompt:
        return "From the sources: " + prompt.split("Sources:", 1)[1].split("Question:", 1)[0].strip()[:1500]
    return "What code opens the payroll archive vault?"


def write_sources(path: Path, sources: list[dict]) -> None:
    path.write_text(yaml.safe_dump({"sources": sources}, sort_keys=False), encoding="utf-8")


def cache_blob(cache_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(cache_dir.glob("*.sqlite*")))


def test_purge_leaves_no_trace_of_the_source_in_any_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, milvus_dir):
    milvus_uri, milvus_data = milvus_dir
    home, dagster_home, inputs = tmp_path / "rag_home", tmp_path / "dagster_home", tmp_path / "inputs"
    for folder, docs in ((inputs / "hr", SECRET_DOCS), (inputs / "docs", PUBLIC_DOCS), (inputs / "old", OLD_DOCS)):
        folder.mkdir(parents=True)
        for name, text in docs.items():
            (folder / name).write_text(text, encoding="utf-8")
    home.mkdir()
    dagster_home.mkdir()
    monkeypatch.setenv("RAG_HOME", str(home))
    sources_file = home / "sources.yaml"
    public = {"name": "team-docs", "kind": "markdown", "paths": [str(inputs / "docs")]}
    secret = {"name": "hr-secrets", "kind": "markdown", "paths": [str(inputs / "hr")], "sensitive": True}
    old = {"name": "old-notes", "kind": "markdown", "paths": [str(inputs / "old")]}
    write_sources(sources_file, [public, secret, old])

    with OpenAIFaultServer(responder=quote_sources) as llm_server, dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        embedder = EmbedderResource()  # its cache lives under RAG_HOME
        resources = {
            "io_manager": PolarsParquetIOManager(),
            "embedder": embedder,
            "milvus": MilvusResource(uri=milvus_uri),
            "sources": SourcesResource(path=str(sources_file)),
            "warehouse_db": WarehouseResource(),
            "inference_io": dg.FilesystemIOManager(base_dir=str(home / "inference")),
            "llm": LLMResource(provider="openai", model="loopback", base_url=llm_server.base_url + "/v1", external=False),
        }
        instance.add_dynamic_partitions(SOURCES_PARTITION, ["team-docs", "hr-secrets", "old-notes"])
        instance.add_dynamic_partitions(VARIANTS_PARTITION, [DEFAULT_VARIANT])
        for source in ("team-docs", "hr-secrets", "old-notes"):
            assert dg.materialize(INGEST_ASSETS, partition_key=partition_key(source), instance=instance, resources=resources, run_config=QUIET_LOGS).success
        assert dg.materialize([warehouse, schema_index], instance=instance, resources=resources, run_config=QUIET_LOGS).success

        ask = ask_job.execute_in_process(
            run_config={"ops": {"retrieve_original": {"config": {"question": f"Is {MARKER} the code of the payroll vault?", "n_rephrasings": 1}}},
                        **QUIET_LOGS},
            instance=instance, resources=resources)
        answer = ask.output_for_node("answer_question")
        assert MARKER in answer["answer"] and "hr-secrets" in {s["source"] for s in answer["sources"]}
        assert instance.get_run_by_id(ask.run_id).tags[source_tag("hr-secrets")] == "true"
        output_meta = next(e for e in ask.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key == "answer_question")
        shown = output_meta.event_specific_data.metadata["result"].value
        assert all(s["snippet"] == "" for s in shown["sources"] if s["source"] == "hr-secrets")  # no chunk text in metadata
        public_ask = ask_job.execute_in_process(
            run_config={"ops": {"retrieve_original": {"config": {"question": "Which database is in-process?", "n_rephrasings": 1,
                                                                 "sources": ["team-docs"]}}}, **QUIET_LOGS},
            instance=instance, resources=resources)

        client = resources["milvus"].client()
        chunks_name = collection_name(embedder.model_id)
        team_rows = count_for_source(client, chunks_name, "team-docs")
        secret_vectors = pl.read_parquet(home / "assets" / "embeddings" / "hr-secrets.parquet")["vector"].to_numpy().astype(np.float32)
        public_vectors = pl.read_parquet(home / "assets" / "embeddings" / "team-docs.parquet")["vector"].to_numpy().astype(np.float32)
        cache_dir = home / "embedding_cache"
        assert all(v.tobytes() in cache_blob(cache_dir) for v in secret_vectors)

        roots = [home, dagster_home, milvus_data]
        before = marker_hits(roots)
        for root in roots:  # the scan sees the marker in every store, so zero hits later means something
            assert any(h.startswith(str(root)) for h in before), (root, before)
        assert not marker_hits([home / "warehouse.duckdb"]), "the warehouse never holds a sensitive source's text"
        public_before = marker_hits(roots, PUBLIC_MARKER)
        assert str(home / "warehouse.duckdb") in public_before and any("/collections/schema__" in h for h in public_before)
        assert any("/inference/" in h for h in before) and any("/answers/" in h for h in before)
        assert any(h.endswith("history/runs.db") for h in before)  # the question, in the run's config and tags

        team_ids = ids_for_source(client, chunks_name, "team-docs")
        client.delete(chunks_name, ids=[sorted(team_ids)[0]])  # as if an index step's write was lost in the rewrite's copy
        write_sources(sources_file, [public])  # what the sensor sees; it then drops the partition and launches the purge
        for gone in ("hr-secrets", "old-notes"):
            instance.delete_dynamic_partition(SOURCES_PARTITION, gone)
        purge = purge_job.execute_in_process(
            run_config={"ops": {"purge_sources": {"config": {"sources": ["hr-secrets", "old-notes"]}}}, **QUIET_LOGS},
            instance=instance, resources=resources)
        assert purge.success

        assert marker_hits(roots) == []
        assert marker_hits(roots, PUBLIC_MARKER) == []
        # ...while the purged sources' ingest runs are kept: their logs and metadata never held text.
        assert instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "hr-secrets|default"}))
        blob = cache_blob(cache_dir)
        assert not any(v.tobytes() in blob for v in secret_vectors)  # the cached vectors left the file too
        assert all(v.tobytes() in blob for v in public_vectors)
        assert instance.get_run_by_id(ask.run_id) is None and not (home / "answers" / f"{ask.run_id}.json").exists()
        assert not (home / "inference" / ask.run_id).exists()

        # The other source and the run that only retrieved from it are intact.
        assert instance.get_run_by_id(public_ask.run_id) is not None and (home / "answers" / f"{public_ask.run_id}.json").exists()
        assert count_for_source(client, chunks_name, "team-docs") == team_rows == count_rows(client, chunks_name)  # re-synced
        assert ids_for_source(client, chunks_name, "team-docs") == team_ids
        assert count_for_source(client, chunks_name, "hr-secrets") == 0
        for asset in ("documents", "chunks", "embeddings"):
            assert (home / "assets" / asset / "team-docs.parquet").is_file()
            assert not (home / "assets" / asset / "hr-secrets.parquet").exists()
        hits = Retriever(client, chunks_name, embedder.embed_queries).search(
            ["which database is in-process?"], RetrievalSettings(mode="hybrid", top_k=3))[0]
        assert hits and hits[0].title == "DuckDB"
        with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
            assert con.execute("SELECT DISTINCT source FROM documents").fetchall() == [("team-docs",)]


def test_the_warehouse_keeps_ids_and_counts_of_sensitive_sources_but_not_their_text(tmp_path: Path):
    """The warehouse decision: a sensitive source's rows stay countable, their title, heading path and text are NULL."""
    from rag_assets.inference.sql.warehouse import build_warehouse
    from rag_assets.sources import SourceSpec

    docs = pl.DataFrame({"doc_id": ["a", "b"], "source": ["pub", "hr"], "locator": ["a.md", "b.md"], "title": ["Alpha", f"Vault {MARKER}"],
                         "text": ["alpha text", f"code {MARKER}"], "sensitive": [False, True]})
    chunks = pl.DataFrame({"chunk_id": ["c1", "c2"], "doc_id": ["a", "b"], "source": ["pub", "hr"], "title": ["Alpha", f"Vault {MARKER}"],
                           "heading_path": ["Alpha", f"Vault {MARKER}"], "text": ["alpha text", f"code {MARKER}"], "n_tokens": [3, 4],
                           "sensitive": [False, True]})
    specs = [SourceSpec(name="pub", kind="markdown", paths=["a"]), SourceSpec(name="hr", kind="markdown", paths=["b"], sensitive=True)]
    target = tmp_path / "warehouse.duckdb"
    counts = build_warehouse(target, docs, chunks, specs, [], [])
    assert counts["documents"] == counts["chunks"] == 2
    assert marker_hits([tmp_path]) == []
    with duckdb.connect(str(target), read_only=True) as con:
        assert con.execute("SELECT source, title, text, n_chars, text_withheld FROM documents ORDER BY doc_id").fetchall() == [
            ("pub", "Alpha", "alpha text", 10, False), ("hr", None, None, len(f"code {MARKER}"), True)]
        assert con.execute("SELECT source, title, heading_path, text, n_tokens, text_withheld FROM chunks ORDER BY chunk_id").fetchall() == [
            ("pub", "Alpha", "Alpha", "alpha text", 3, False), ("hr", None, None, None, 4, True)]


def test_forgetting_cache_entries_removes_their_bytes_from_the_sqlite_file(tmp_path: Path):
    from rag_assets.embedding.cache import EmbeddingCache, forget_everywhere

    cache = EmbeddingCache(tmp_path / "m.sqlite", 4)
    gone, kept = np.full((1, 4), 0.123456, np.float32), np.full((1, 4), 0.654321, np.float32)
    cache.put_many(["gone"], gone)
    cache.put_many(["kept"], kept)
    cache.close()
    assert gone.tobytes() in cache_blob(tmp_path)
    assert forget_everywhere(tmp_path, {"gone"}) == 1
    assert gone.tobytes() not in cache_blob(tmp_path) and kept.tobytes() in cache_blob(tmp_path)
    with sqlite3.connect(tmp_path / "m.sqlite") as con:
        assert con.execute("SELECT text_hash FROM vectors").fetchall() == [("kept",)]


def test_scrubbing_a_sqlite_file_drops_deleted_rows_left_in_free_pages(tmp_path: Path):
    """Dagster's run and event-log storages delete rows without `secure_delete` where SQLite is built so
    (the default of upstream SQLite): their bytes stay in free pages and the WAL until the purge vacuums."""
    from rag_assets.ingest.purge import scrub_sqlite

    path = tmp_path / "runs.db"
    with sqlite3.connect(path, isolation_level=None) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA secure_delete=OFF")
        con.execute("CREATE TABLE runs (run_id TEXT, body TEXT)")
        con.executemany("INSERT INTO runs VALUES (?, ?)", [("a", f"question about {MARKER} " * 50), ("b", "a public question " * 50)])
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("DELETE FROM runs WHERE run_id = 'a'")
        con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    assert marker_hits([tmp_path]), "without a vacuum the deleted row's bytes are still in the file"
    scrub_sqlite(path)
    assert marker_hits([tmp_path]) == []
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT run_id FROM runs").fetchall() == [("b",)]


def _rows(source: str, n: int, text: str) -> list[dict]:
    rng = np.random.default_rng(len(source))
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    return [{"chunk_id": f"{source}-{i}", "doc_id": source, "source": source, "title": source, "link": "", "heading_path": "",
             "position": i, "sensitive": False, "text": f"{text} {i}", "vector": (v / np.linalg.norm(v)).tolist()} for i, v in enumerate(vectors)]


def test_a_milvus_lite_rewrite_drops_deleted_rows_from_disk_and_never_loses_rows_after_a_crash(tmp_path: Path):
    from pymilvus import MilvusClient

    from rag_assets.index_store import (
        REWRITE_SUFFIX, copy_rows, delete_source, ensure_collection, reclaim_deleted, recover_rewrite,
    )

    db = tmp_path / "milvus.db"
    client = MilvusClient(uri=str(db))
    try:
        create = lambda name, dim: ensure_collection(client, name, dim)  # noqa: E731
        create("chunks__t", 8)
        client.upsert("chunks__t", _rows("gone", 20, f"secret {MARKER}") + _rows("kept", 30, "public text"))
        client.flush("chunks__t")
        assert delete_source(client, "chunks__t", "gone") == 20
        assert marker_hits([db]), "a Milvus Lite delete is soft: the text is still on disk"
        assert reclaim_deleted(client, "chunks__t", create) == "rewritten"
        assert marker_hits([db]) == [] and count_rows(client, "chunks__t") == 30
        assert client.search("chunks__t", data=["public"], anns_field="sparse", limit=3, search_params={"metric_type": "BM25"})[0]

        # Crash after the drop, before the rename: the copy is renamed into place.
        create("chunks__t" + REWRITE_SUFFIX, 8)
        copy_rows(client, "chunks__t", "chunks__t" + REWRITE_SUFFIX)
        client.drop_collection("chunks__t")
        recover_rewrite(client, "chunks__t")
        assert count_rows(client, "chunks__t") == 30 and not client.has_collection("chunks__t" + REWRITE_SUFFIX)

        # A copy left behind while the collection was re-created by a writer: merged, nothing dropped.
        create("chunks__t" + REWRITE_SUFFIX, 8)
        copy_rows(client, "chunks__t", "chunks__t" + REWRITE_SUFFIX)
        client.drop_collection("chunks__t")
        create("chunks__t", 8)
        client.upsert("chunks__t", _rows("new", 5, "fresh text"))
        client.flush("chunks__t")
        recover_rewrite(client, "chunks__t")
        assert count_rows(client, "chunks__t") == 35 and not client.has_collection("chunks__t" + REWRITE_SUFFIX)
    finally:
        client.close()


def test_saved_answers_are_found_by_the_sources_they_cite_or_the_values_they_return(tmp_path: Path):
    """Local `ask` runs (no Dagster run to tag) and SQL runs are found by their saved results."""
    import json

    from rag_assets.inference.results import answers_citing, delete_results

    home = tmp_path / "home"
    doc_text = f"Old meeting notes about the {PUBLIC_MARKER} launch."
    answers = {
        "ask-old": ("answers", {"answer": "x", "sources": [{"source": "old-notes", "chunk_id": "c1"}]}),
        "ask-other": ("answers", {"answer": "y", "sources": [{"source": "team-docs", "chunk_id": "c2"}]}),
        "sql-text": ("sql_answers", {"rows": [[f"about the {PUBLIC_MARKER} launch"]], "sources": None}),
        "sql-id": ("sql_answers", {"rows": [["d-old", 3]]}),
        "sql-other": ("sql_answers", {"rows": [["team-docs", 4], ["DuckDB is fast", 1]]}),
    }
    for run_id, (folder, result) in answers.items():
        (home / folder).mkdir(parents=True, exist_ok=True)
        (home / folder / f"{run_id}.json").write_text(json.dumps(result))
    (home / "inference" / "ask-old" / "answer_question").mkdir(parents=True)
    (home / "inference" / "ask-old" / "answer_question" / "result").write_bytes(b"pickled")

    found = answers_citing({"old-notes"}, [doc_text], {"d-old"}, home=home)
    assert sorted(found) == ["ask-old", "sql-id", "sql-text"]
    assert delete_results(found, home=home) == 4
    assert sorted(p.stem for p in home.rglob("*.json")) == ["ask-other", "sql-other"]
    assert not (home / "inference" / "ask-old").exists()
