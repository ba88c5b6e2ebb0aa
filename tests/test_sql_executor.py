"""The executor on a real DuckDB file: timeout, row limit, and no write or file read even with the guard bypassed.
Plus the pure pieces around it: the warehouse builder, schema description, SQL extraction, result comparison."""

import datetime as dt
import hashlib
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from rag_assets.inference.sql.assistant import check_and_run, extract_sql
from rag_assets.inference.sql.evaluate import is_correct, is_ordered, same_result
from rag_assets.inference.sql.gold import GoldQuestion
from rag_assets.inference.sql.executor import QueryError, connect_readonly, database_tables, run_query
from rag_assets.inference.sql.schema_docs import describe_database, render_tables, schema_docs
from rag_assets.inference.sql.warehouse import TABLES, build_warehouse
from rag_assets.sources import SourceSpec

SECRET = "s3cr3t-7f1e9a-do-not-leak"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE numbers AS SELECT range AS n, 'row ' || range AS label FROM range(100000)")
    con.execute("COMMENT ON TABLE numbers IS 'one row per number'")
    con.close()
    return path


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(f"{SECRET}\n")
    return path


def test_row_limit_streams_only_what_is_kept(db: Path):
    with connect_readonly(db) as con:
        started = time.perf_counter()
        result = run_query(con, "SELECT a.n, b.n FROM numbers a, numbers b", max_rows=10, timeout_s=10)  # 10^10 rows
        assert time.perf_counter() - started < 5
    assert len(result.rows) == 10 and result.truncated and result.columns == ["n", "n"]
    with connect_readonly(db) as con:
        small = run_query(con, "SELECT n FROM numbers WHERE n < 3 ORDER BY n", max_rows=10)
    assert small.rows == [[0], [1], [2]] and not small.truncated


def test_a_long_query_is_interrupted_at_its_timeout(db: Path):
    with connect_readonly(db) as con:
        started = time.perf_counter()
        with pytest.raises(QueryError, match="timeout") as err:
            run_query(con, "SELECT count(*) FROM numbers a, numbers b, numbers c", max_rows=10, timeout_s=0.5)
        elapsed = time.perf_counter() - started
        assert err.value.kind == "timeout" and elapsed < 5
        assert run_query(con, "SELECT count(*) FROM numbers").rows == [[100000]]  # the connection is still usable


BYPASS = [  # statements the guard refuses, sent straight to the connection
    "INSERT INTO numbers VALUES (1, 'x')",
    "UPDATE numbers SET label = 'x'",
    "DELETE FROM numbers",
    "DROP TABLE numbers",
    "CREATE TABLE t (x INT)",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "ATTACH '{tmp}/other.duckdb' AS other",
    "COPY numbers TO '{tmp}/leak.csv'",
    "EXPORT DATABASE '{tmp}/dump'",
    "INSTALL httpfs",
    "SELECT * FROM read_text('{secret}')",
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM read_blob('{secret}')",
    "SELECT * FROM '{secret}'",
    "SELECT * FROM glob('{tmp}/*')",
]


@pytest.mark.parametrize("statement", BYPASS)
def test_writes_and_file_reads_fail_even_without_the_guard(db: Path, secret_file: Path, tmp_path: Path, statement: str):
    before = sha256(db)
    sql = statement.format(tmp=tmp_path, secret=secret_file)
    with connect_readonly(db) as con:
        with pytest.raises(QueryError) as err:
            run_query(con, sql)
        assert run_query(con, "SELECT current_setting('enable_external_access')").rows == [[False]]
    assert SECRET not in str(err.value)
    assert sha256(db) == before
    assert not (tmp_path / "leak.csv").exists() and not (tmp_path / "dump").exists() and not (tmp_path / "other.duckdb").exists()


def test_check_and_run_reports_rejections_errors_and_rows(db: Path):
    rejected = check_and_run(db, "SELECT 1; DROP TABLE numbers", 10, 5)
    assert rejected.error_kind == "rejected" and "exactly one statement" in rejected.error
    failed = check_and_run(db, "SELECT nope FROM numbers", 10, 5)
    assert failed.error_kind == "error" and "nope" in failed.error
    ok = check_and_run(db, "SELECT n, label FROM numbers ORDER BY n LIMIT 2", 10, 5)
    assert ok.ok and ok.rows == [[0, "row 0"], [1, "row 1"]] and ok.sql.startswith("SELECT")


def test_warehouse_builder_writes_every_table_with_comments_atomically(tmp_path: Path):
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    docs = pl.DataFrame({"doc_id": ["a", "b"], "source": ["pub", "hr"], "locator": ["a.md", "b.md"], "link": ["file:///a.md", "file:///b.md"],
                         "title": ["Alpha", "Payroll"], "text": ["alpha text", f"{SECRET} salary"], "content_hash": ["h1", "h2"],
                         "updated_at": [now, now], "sensitive": [False, True], "error": [None, None]})
    specs = [SourceSpec(name="pub", kind="markdown", paths=["docs"]), SourceSpec(name="hr", kind="markdown", paths=["hr"], sensitive=True)]
    runs = [{"run_id": "r1", "job_name": "ingest", "status": "SUCCESS", "source": "pub", "created_at": now, "started_at": now,
             "ended_at": now + dt.timedelta(seconds=2.5), "duration_s": 2.5}]
    target = tmp_path / "w" / "warehouse.duckdb"
    counts = build_warehouse(target, docs, None, specs, runs, [])
    assert counts == {"sources": 2, "documents": 2, "chunks": 0, "runs": 1, "eval_results": 0}
    assert [p.name for p in target.parent.iterdir()] == ["warehouse.duckdb"]  # no temporary file left
    with connect_readonly(target) as con:
        assert database_tables(con) == sorted(TABLES)
        assert run_query(con, "SELECT n_chars, updated_at FROM documents WHERE doc_id = 'a'").rows == [[10, "2026-01-02T03:04:05"]]
        tables = {t.name: t for t in describe_database(con)}
    assert tables["documents"].comment.startswith("One row per ingested document")
    text = render_tables([tables["documents"]])
    assert "CREATE TABLE documents (" in text and "'Alpha'" in text
    assert SECRET not in text and "Payroll" not in text  # samples never come from sensitive rows
    docs_for_index = schema_docs("k", list(tables.values()))
    assert len({d.doc_id for d in docs_for_index}) == len(docs_for_index) == 5 + sum(len(t.columns) for t in TABLES.values())


@pytest.mark.parametrize("answer,expected", [
    (" count(*) FROM documents", "SELECT count(*) FROM documents"),
    ("SELECT 1", "SELECT 1"),
    ("```sql\nSELECT title FROM documents\n```\nThis lists titles.", "SELECT title FROM documents"),
    ("SQL: WITH a AS (SELECT 1) SELECT * FROM a", "WITH a AS (SELECT 1) SELECT * FROM a"),
    ("DROP TABLE documents", "DROP TABLE documents"),  # kept as is, for the guard to refuse
])
def test_sql_is_extracted_from_model_answers(answer: str, expected: str):
    assert extract_sql(answer) == expected


def test_execution_accuracy_comparison():
    assert same_result([["a", 1], ["b", 2]], [["b", 2], ["a", 1]], ordered=False)
    assert not same_result([["a", 1], ["b", 2]], [["b", 2], ["a", 1]], ordered=True)
    assert same_result([["a", 2]], [[2, "a"]], ordered=False)  # columns in another order
    assert same_result([[0.333333333]], [[1 / 3]], ordered=False)
    assert not same_result([["a"], ["a"]], [["a"]], ordered=False)  # multisets, not sets
    assert not same_result([[1]], [[1, 2]], ordered=False)
    assert is_ordered("SELECT a FROM t ORDER BY a") and not is_ordered("SELECT a FROM (SELECT a FROM t ORDER BY a)")


def test_a_top_rows_gold_query_accepts_any_row_tied_at_the_cut_off(tmp_path: Path):
    """Gold `ORDER BY ... LIMIT n` with ties at the n-th row: every tied answer is correct, others are not."""
    path = tmp_path / "ties.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE chunks (doc VARCHAR, n INTEGER)")
    con.execute("INSERT INTO chunks VALUES ('a', 1), ('a', 2), ('b', 1), ('b', 2), ('c', 1), ('d', 1), ('d', 2), ('d', 3)")
    con.close()
    most = GoldQuestion("Which document has the most chunks?", "SELECT doc FROM chunks GROUP BY doc ORDER BY count(*) DESC LIMIT 1", ("chunks",))
    assert is_correct(path, most, [["d"]]) and not is_correct(path, most, [["a"]])
    top3 = GoldQuestion("Top three?", "SELECT doc, count(*) AS k FROM chunks GROUP BY doc ORDER BY k DESC LIMIT 3", ("chunks",))
    assert is_correct(path, top3, [["d", 3], ["a", 2], ["b", 2]]) and is_correct(path, top3, [["d", 3], ["b", 2], ["a", 2]])
    assert not is_correct(path, top3, [["a", 2], ["d", 3], ["b", 2]])  # ordered: the strict leader first
    assert not is_correct(path, top3, [["d", 3], ["a", 2], ["c", 1]]) and not is_correct(path, top3, [["d", 3], ["a", 2]])
    second = GoldQuestion("Runner-up?", "SELECT doc FROM chunks GROUP BY doc ORDER BY count(*) DESC, 1 LIMIT 2", ("chunks",))
    assert is_correct(path, second, [["d"], ["a"]]) and not is_correct(path, second, [["d"], ["b"]])  # tie broken by name
    fewest = GoldQuestion("Fewest?", "SELECT doc FROM chunks GROUP BY doc ORDER BY 1 LIMIT 10", ("chunks",))
    assert is_correct(path, fewest, [["a"], ["b"], ["c"], ["d"]])  # fewer rows than the limit: no ties to allow


def test_interrupt_timer_does_not_leak_threads(db: Path):
    before = threading.active_count()
    with connect_readonly(db) as con:
        for _ in range(5):
            run_query(con, "SELECT 1", timeout_s=30)
    time.sleep(0.1)
    assert threading.active_count() <= before
