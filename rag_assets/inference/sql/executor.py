"""Run one query on a DuckDB file that cannot be changed: read-only, no file or network access,
configuration locked, a timeout (`interrupt()` from a timer thread) and a row limit (streamed fetch)."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

# One fixed configuration: DuckDB shares one database instance per (path, config) in a process.
READ_ONLY_CONFIG = {
    "access_mode": "READ_ONLY",
    "enable_external_access": False,  # no read_csv/read_text/glob/ATTACH/COPY/INSTALL, no replacement scans of files
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,  # a query cannot SET any of the above back
}


class QueryError(Exception):
    """The query failed on the database (`kind`: timeout or error)."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list]
    truncated: bool  # more rows than max_rows existed
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def connect_readonly(path: Path | str):
    """A read-only connection with external access off and the configuration locked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no DuckDB database at {path}")
    con = duckdb.connect(str(path), read_only=True, config=dict(READ_ONLY_CONFIG))
    try:
        yield con
    finally:
        con.close()


def json_value(value):
    """A result cell as a JSON-friendly value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


def run_query(con: duckdb.DuckDBPyConnection, sql: str, max_rows: int = 1000, timeout_s: float = 10.0) -> QueryResult:
    """Execute `sql`, fetch at most `max_rows` rows; interrupt it after `timeout_s` seconds."""
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(timeout_s, stop)
    started = time.perf_counter()
    timer.start()
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchmany(max_rows + 1) if columns else []
    except duckdb.Error as exc:
        if fired.is_set() or isinstance(exc, duckdb.InterruptException):
            raise QueryError("timeout", f"the query ran past its {timeout_s:g}s timeout and was interrupted") from exc
        raise QueryError("error", f"{type(exc).__name__}: {str(exc).strip()}") from exc
    finally:
        timer.cancel()
    return QueryResult(columns, [[json_value(v) for v in r] for r in rows[:max_rows]], len(rows) > max_rows,
                       round(time.perf_counter() - started, 4))


def database_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables and views of the database's main schema (what a query may reference)."""
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal "
        "UNION SELECT view_name FROM duckdb_views() WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal "
        "ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]
