"""The SQL guard: malicious statements are refused with a clear reason, legitimate queries pass."""

import pytest
import sqlglot

from rag_assets.inference.sql.guard import GuardError, validate

KNOWN = ["sources", "documents", "chunks", "runs", "eval_results"]

MALICIOUS = [
    # writes and DDL
    ("DROP TABLE documents", "only SELECT queries are allowed, got DROP"),
    ("DELETE FROM documents", "got DELETE"),
    ("UPDATE documents SET title = 'x'", "got UPDATE"),
    ("INSERT INTO runs SELECT * FROM runs", "got INSERT"),
    ("CREATE TABLE t AS SELECT 1", "got CREATE"),
    ("ALTER TABLE documents ADD COLUMN x INT", "got ALTER"),
    ("TRUNCATE documents", "got TRUNCATE"),
    ("WITH gone AS (DELETE FROM documents RETURNING *) SELECT * FROM gone", "DELETE is not allowed"),
    ("SELECT 1 INTO t", "INTO is not allowed"),
    # several statements
    ("SELECT count(*) FROM documents; DROP TABLE documents", "exactly one statement is allowed, got 2"),
    ("SELECT 1; SELECT 2", "exactly one statement is allowed, got 2"),
    ("FROM documents; COPY (SELECT 1) TO 'out.csv'", "exactly one statement"),
    # database commands
    ("PRAGMA database_list", "got PRAGMA"),
    ("ATTACH '/tmp/other.db' AS other", "got ATTACH"),
    ("DETACH other", "got DETACH"),
    ("COPY documents TO '/tmp/leak.csv'", "got COPY"),
    ("INSTALL httpfs", "got INSTALL"),
    ("LOAD httpfs", "got LOAD"),
    ("SET enable_external_access = true", "got SET"),
    ("CALL pragma_version()", "got CALL"),
    ("CHECKPOINT", "got CHECKPOINT"),
    ("EXPORT DATABASE '/tmp/dump'", "not valid SQL"),
    ("DESCRIBE documents", "got DESCRIBE"),
    # file and system access
    ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv() is not allowed"),
    ("SELECT * FROM read_csv_auto('data.csv')", "read_csv_auto() is not allowed"),
    ("SELECT * FROM read_parquet('x.parquet')", "read_parquet() is not allowed"),
    ("SELECT * FROM read_json('x.json')", "read_json() is not allowed"),
    ("SELECT * FROM glob('/home/*')", "glob() is not allowed"),
    ("SELECT content FROM read_text('/etc/passwd')", "read_text() is not allowed"),
    ("SELECT read_text('/etc/passwd')", "function read_text() is not allowed"),
    ("SELECT * FROM parquet_scan('x.parquet')", "parquet_scan() is not allowed"),
    ("SELECT * FROM sqlite_scan('x.db', 't')", "sqlite_scan() is not allowed"),
    ("SELECT * FROM '/etc/passwd'", "unknown table '/etc/passwd'"),
    ('SELECT * FROM "secrets.csv"', "unknown table 'secrets.csv'"),
    ("SELECT getenv('HOME')", "getenv() is not allowed"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings() is not allowed"),
    ("SELECT * FROM duckdb_secrets()", "duckdb_secrets() is not allowed"),
    ("SELECT * FROM query('DROP TABLE documents')", "query() is not allowed"),
    ("SELECT title FROM documents WHERE link = 'file:///etc/passwd'", "file path or URL literals are not allowed"),
    ("SELECT title FROM documents WHERE title = '../secret.txt'", "file path or URL literals"),
    ("SELECT 'http://attacker.example/x' AS u", "file path or URL literals"),
    # tables outside the database
    ("SELECT * FROM information_schema.tables", "outside the database"),
    ("SELECT * FROM other.main.t", "outside the database"),
    ("SELECT * FROM documents UNION SELECT * FROM secrets", "unknown table 'secrets'"),
    # not SQL at all
    ("", "empty query"),
    ("Sure! Here is the query you asked for.", "not valid SQL"),
]

LEGITIMATE = [
    "SELECT count(*) FROM documents",
    "SELECT count(*) FROM documents;",
    "FROM documents",
    "select source, count(*) as n from chunks group by source order by n desc",
    "WITH per_doc AS (SELECT doc_id, count(*) AS n FROM chunks GROUP BY doc_id) SELECT max(n) FROM per_doc",
    "SELECT name FROM sources UNION ALL SELECT DISTINCT source FROM documents",
    "SELECT d.title, count(*) FROM documents d JOIN chunks c ON c.doc_id = d.doc_id GROUP BY d.title",
    "SELECT * FROM main.documents WHERE link LIKE '%/docs/%'",
    "SELECT split_part(link, '/', -1) AS file FROM documents",
    "SELECT title FROM documents WHERE locator = 'guide.md'",
    "SELECT status, count(*) FROM runs WHERE created_at > now() - INTERVAL 7 DAY GROUP BY status",
    "SELECT strftime(started_at, '%Y-%m-%d') AS day, avg(duration_s) FROM runs GROUP BY day",
    "SELECT mode FROM eval_results ORDER BY ndcg_at_10 DESC LIMIT 1",
    "SELECT unnest([1, 2, 3]) AS x",
    "SELECT * FROM range(5)",
    "SELECT title FROM documents WHERE doc_id IN (SELECT doc_id FROM chunks WHERE n_tokens > 100)",
]


@pytest.mark.parametrize("sql,reason", MALICIOUS, ids=[m[0][:40] or "empty" for m in MALICIOUS])
def test_malicious_sql_is_rejected_with_a_clear_reason(sql: str, reason: str):
    with pytest.raises(GuardError) as err:
        validate(sql, KNOWN)
    assert reason.lower() in str(err.value).lower()


@pytest.mark.parametrize("sql", LEGITIMATE)
def test_legitimate_queries_pass_and_come_back_as_one_select(sql: str):
    checked = validate(sql, KNOWN)
    statements = sqlglot.parse(checked, read="duckdb")
    assert len(statements) == 1 and statements[0].key in ("select", "union")


def test_cte_names_count_as_tables_but_only_inside_their_query():
    assert validate("WITH secrets AS (SELECT 1 AS x) SELECT x FROM secrets", KNOWN)
    with pytest.raises(GuardError, match="unknown table 'secrets'"):
        validate("SELECT * FROM secrets", KNOWN)


def test_known_tables_are_matched_case_insensitively():
    assert validate("SELECT COUNT(*) FROM Documents", KNOWN)
    with pytest.raises(GuardError, match="known tables: chunks, documents"):
        validate("SELECT * FROM users", KNOWN)
