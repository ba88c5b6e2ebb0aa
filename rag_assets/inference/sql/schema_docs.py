"""Describe any DuckDB database for retrieval and prompting: tables, columns, types, comments, samples.

Sample values come only from rows known to be public (`public_rows_filter`), so prompts built from
them never carry a sensitive source's text: a row is withheld when its `sensitive` flag is true or
unknown (NULL), or when it belongs to a source marked sensitive, in the database's `sources` table or
by the caller (`sources.yaml` as it is now: a source marked sensitive after its rows were written is
withheld from that moment on, before any re-ingestion).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from dataclasses import dataclass, field

import duckdb

from rag_assets.hashing import sha256_hex

SAMPLE_ROWS = 200  # rows scanned for distinct sample values
SAMPLES = 3
SAMPLE_CHARS = 60
OPAQUE_ID = re.compile(r"^[0-9a-f]{16,}$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
RANGE_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
               "FLOAT", "DOUBLE", "DECIMAL", "DATE", "TIMESTAMP", "TIME", "INTERVAL")


@dataclass
class ColumnInfo:
    name: str
    type: str
    comment: str = ""
    samples: list[str] = field(default_factory=list)  # a few distinct values, or "min .. max" for numbers and dates


@dataclass
class TableInfo:
    name: str
    comment: str
    rows: int
    columns: list[ColumnInfo]


@dataclass(frozen=True)
class SchemaDoc:
    """One text the schema index embeds: a table, or one of its columns."""

    doc_id: str
    table: str
    column: str
    text: str


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _clip(value, limit: int = SAMPLE_CHARS) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dt.datetime):
        value = value.isoformat(sep=" ", timespec="seconds")
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _samples(con: duckdb.DuckDBPyConnection, table: str, col: ColumnInfo, row_filter: str) -> list[str]:
    c, t = quote_ident(col.name), quote_ident(table)
    where = f"WHERE {c} IS NOT NULL" + (f" AND {row_filter}" if row_filter else "")
    if col.type.split("(")[0] in RANGE_TYPES or col.type.startswith(("TIMESTAMP", "DECIMAL")):
        lo, hi = con.execute(f"SELECT min({c}), max({c}) FROM {t} {where}").fetchone()
        return [] if lo is None else [f"from {_clip(lo)} to {_clip(hi)}"]
    if col.type in ("BLOB", "BIT") or col.type.endswith("[]") or col.type.startswith(("STRUCT", "MAP", "UNION")):
        return []
    seen: list[str] = []
    for (value,) in con.execute(f"SELECT {c} FROM {t} {where} LIMIT {SAMPLE_ROWS}").fetchall():
        if isinstance(value, str) and not value.strip():
            continue
        text = f"'{_clip(value)}'" if isinstance(value, str) else _clip(value)
        if text not in seen:
            seen.append(text)
            if len(seen) == SAMPLES:
                break
    return seen[:1] if seen and all(OPAQUE_ID.match(v.strip("'")) for v in seen) else seen  # one hash or uuid is enough


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def database_withheld_sources(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The source names a `sources(name, sensitive)` table does not mark public (none without such a table)."""
    cols = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                            "AND schema_name = 'main' AND table_name = 'sources'").fetchall())
    if cols.get("sensitive") != "BOOLEAN" or cols.get("name") != "VARCHAR":
        return set()
    return {n for (n,) in con.execute("SELECT name FROM sources WHERE sensitive IS NOT FALSE AND name IS NOT NULL").fetchall()}


def public_rows_filter(table: str, cols: list[ColumnInfo], withheld: Collection[str] | None) -> str:
    """A WHERE condition keeping the rows whose values any model may see ("" when nothing marks rows sensitive).

    Withheld: rows whose boolean `sensitive` is true or NULL, and rows of a withheld source (the `source`
    column; `name` in the `sources` table). `withheld=None` means sensitivity is unknown: every source's rows.
    """
    types = {c.name: c.type for c in cols}
    conditions = ["sensitive IS FALSE"] if types.get("sensitive") == "BOOLEAN" else []  # NULL is unknown: withheld
    key = "name" if table == "sources" else "source"
    if types.get(key) == "VARCHAR":
        if withheld is None:
            conditions.append(f"{key} IS NULL")
        elif withheld:
            conditions.append(f"({key} IS NULL OR {key} NOT IN ({', '.join(_quote(n) for n in sorted(withheld))}))")
    return " AND ".join(conditions)


def describe_database(con: duckdb.DuckDBPyConnection, with_samples: bool = True,
                      withheld_sources: Collection[str] | None = ()) -> list[TableInfo]:
    """Every table and view of the main schema, with column comments and sample values from public rows only.

    `withheld_sources`: sources whose rows give no samples, on top of those the database marks sensitive (the
    caller's current view, e.g. `sources.yaml`, which may be newer than the database); None: unknown, all of them.
    """
    objects = con.execute(
        "SELECT table_name, coalesce(comment, '') FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND NOT internal UNION ALL SELECT view_name, coalesce(comment, '') FROM duckdb_views() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal ORDER BY 1"
    ).fetchall()
    tables = []
    withheld = None if withheld_sources is None else set(withheld_sources) | database_withheld_sources(con)
    for name, comment in objects:
        cols = [ColumnInfo(n, t, c or "") for n, t, c in con.execute(
            "SELECT column_name, data_type, comment FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = ? ORDER BY column_index", [name]).fetchall()]
        rows = con.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()[0]
        row_filter = public_rows_filter(name, cols, withheld)
        if with_samples:
            for col in cols:
                col.samples = _samples(con, name, col, row_filter)
        tables.append(TableInfo(name, comment, int(rows), cols))
    return tables


def schema_docs(database_key: str, tables: list[TableInfo]) -> list[SchemaDoc]:
    """Texts to embed: one per table (description and column names), one per column (type, description, samples)."""
    docs = []
    for t in tables:
        text = f"table {t.name}: {t.comment} Columns: {', '.join(c.name for c in t.columns)}."
        docs.append(SchemaDoc(sha256_hex(database_key, text, length=32), t.name, "", text))
        for c in t.columns:
            text = f"column {t.name}.{c.name} ({c.type}) of table {t.name}: {c.comment or c.name.replace('_', ' ')}."
            if c.samples:
                text += " Examples: " + "; ".join(c.samples) + "."
            docs.append(SchemaDoc(sha256_hex(database_key, text, length=32), t.name, c.name, text))
    return docs


def render_tables(tables: list[TableInfo], sample_chars: int = SAMPLE_CHARS) -> str:
    """The tables as commented `CREATE TABLE` statements, for the SQL prompt."""
    blocks = []
    for t in tables:
        lines = [f"-- {t.comment} ({t.rows} rows)" if t.comment else f"-- {t.rows} rows", f"CREATE TABLE {t.name} ("]
        for i, c in enumerate(t.columns):
            note = c.comment
            if c.samples:
                lead = "values " if c.samples[0].startswith("from ") else "e.g. "
                note += ("; " if note else "") + lead + ", ".join(_clip(s, sample_chars) for s in c.samples)
            comma = "," if i < len(t.columns) - 1 else ""
            lines.append(f"  {c.name} {c.type}{comma}" + (f" -- {note}" if note else ""))
        lines.append(");")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
