"""Validate a generated query with sqlglot before it reaches DuckDB: exactly one read-only query over
known tables. The executor's read-only, no-file-access connection is the second line of defence."""

from __future__ import annotations

import re
from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

DIALECT = "duckdb"
# Statement kinds that never pass, whatever their position in the tree.
FORBIDDEN_NODES: tuple[type[exp.Expression], ...] = tuple(getattr(exp, n) for n in (
    "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable", "Copy", "Command", "Pragma",
    "Set", "Attach", "Detach", "Install", "Use", "Transaction", "Commit", "Rollback", "Describe", "Summarize",
    "LoadData", "Export", "Into",
) if hasattr(exp, n))
TABLE_FUNCTIONS_ALLOWED = {"UNNEST", "RANGE", "GENERATE_SERIES", "EXPLODE"}
FORBIDDEN_FUNCTIONS = {
    "GLOB", "QUERY", "QUERY_TABLE", "GETENV", "SNIFF_CSV", "CURRENT_SETTING", "WHICH_SECRET", "LOAD_EXTENSION",
    "SQLITE_ATTACH", "ICEBERG_METADATA", "ICEBERG_SNAPSHOTS", "ST_READ", "ST_READ_META", "HTTP_GET", "HTTP_POST",
    "SHELL", "SYSTEM",
}
FORBIDDEN_PREFIXES = ("READ_", "DUCKDB_", "PRAGMA_", "PARQUET_", "SQLITE_", "POSTGRES_", "MYSQL_", "ICEBERG_", "DELTA_", "HTTP")
FORBIDDEN_SUFFIXES = ("_SCAN",)
FILE_EXTENSIONS = r"csv|tsv|parquet|json|jsonl|ndjson|txt|db|duckdb|sqlite|sqlite3|xlsx|xls|env|pem|key|yaml|yml|log|gz|zst|arrow|ipc|avro"
# Absolute, home, relative (./ ../), drive or UNC paths, URLs, system folders, and folder/file.ext names.
# (A bare 'notes.txt' compared with a column is harmless: DuckDB reads no file from a literal there.)
PATH_LITERAL = re.compile(
    rf"(^[/~]\w)|(^~/)|(^\.{{1,2}}[/\\])|(^[A-Za-z]:[/\\])|(://)|(^\\\\)|(^/?(etc|proc|sys|dev|home|root|tmp|var)/)"
    rf"|([/\\][^/\\%*]*\.({FILE_EXTENSIONS})$)",
    re.IGNORECASE,
)


class GuardError(ValueError):
    """A query refused before execution; the message says why."""


def function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).upper()
    return node.sql_name().upper()


def _check_function(node: exp.Func) -> None:
    name = function_name(node)
    if name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_PREFIXES) or name.endswith(FORBIDDEN_SUFFIXES):
        raise GuardError(f"function {name.lower()}() is not allowed: it reads files, settings or the system catalog")


def _check_literal(node: exp.Literal) -> None:
    if node.is_string and PATH_LITERAL.search(node.this.strip()):
        raise GuardError(f"file path or URL literals are not allowed: {node.this[:80]!r}")


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def _check_table(node: exp.Table, known: set[str], ctes: set[str]) -> None:
    if not isinstance(node.this, exp.Identifier):
        if isinstance(node.this, exp.Func):
            name = function_name(node.this)
            if name in TABLE_FUNCTIONS_ALLOWED:
                return
            raise GuardError(f"table function {name.lower()}() is not allowed: query the database's tables only")
        raise GuardError(f"only named tables may be queried, not {node.this.sql(DIALECT)[:80]}")
    name = node.name
    if node.args.get("catalog") or (node.db and node.db.lower() != "main"):
        raise GuardError(f"table {node.sql(DIALECT)} is outside the database: only its own tables may be queried")
    if name.lower() not in known and name.lower() not in ctes:
        raise GuardError(f"unknown table {name!r}; known tables: {', '.join(sorted(known)) or 'none'}")


def validate(sql: str, known_tables: Iterable[str]) -> str:
    """The query, normalised, if it is exactly one SELECT/UNION/WITH over known tables; raises `GuardError`."""
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise GuardError("empty query: the model produced no SQL")
    try:
        statements = [s for s in sqlglot.parse(text, read=DIALECT) if s is not None]
    except SqlglotError as exc:
        raise GuardError(f"not valid SQL: {str(exc).splitlines()[0][:200]}") from exc
    if len(statements) != 1:
        raise GuardError(f"exactly one statement is allowed, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise GuardError(f"only SELECT queries are allowed, got {text.split()[0].upper()}")
    known = {t.lower() for t in known_tables}
    ctes = _cte_names(tree)
    for node in tree.walk():
        if isinstance(node, FORBIDDEN_NODES):
            raise GuardError(f"{node.key.upper()} is not allowed: only read-only SELECT queries")
        if isinstance(node, exp.Table):
            _check_table(node, known, ctes)
        elif isinstance(node, exp.Func):
            _check_function(node)
        elif isinstance(node, exp.Literal):
            _check_literal(node)
    if tree.args.get("into"):
        raise GuardError("SELECT ... INTO is not allowed")
    return tree.sql(DIALECT)
