"""The shapes of query the SQL assistant may write, as a llama.cpp GBNF grammar built per question.

`sql_grammar` takes the tables retrieved for the question, best first (names, columns, types), and allows
one SELECT over the best one, or over it joined with another on a shared id column, using only their real
columns (schema retrieval ranks the needed table first far more reliably than a tiny model picks it; the
others stay in the prompt for context and joins):

    SELECT [DISTINCT] col[, col] FROM t [WHERE cond [AND cond]] [ORDER BY col ASC|DESC] [LIMIT n];
    SELECT agg[, agg] FROM t [WHERE cond [AND cond]];
    SELECT col[, agg] FROM t [WHERE cond [AND cond]] GROUP BY col [ORDER BY agg|col ASC|DESC] [LIMIT n];

(every form binds: no aggregate beside an ungrouped column), where an aggregate is `count(*)`,
`count(DISTINCT col)`, `avg`/`sum` of a numeric column or `min`/`max` of a numeric or time column, and a
condition tests a boolean column, NULLs, a text column
against a quoted string (`=`, `<>`, `ILIKE '%...%'`) or a numeric column against a number. A bare `*` is
never offered: every question of the warehouse names what it wants. The grammar continues the prompt's
`SQL: SELECT` primer and ends with `;` (a stop sequence). It only narrows the model's choices: the guard
still validates whatever comes back.

`answer_schema` is the JSON-schema form for providers that take structured outputs instead of a grammar.
"""

from __future__ import annotations

import re
from functools import lru_cache

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
           "FLOAT", "DOUBLE", "REAL", "DECIMAL", "NUMERIC")
TIME = ("DATE", "TIMESTAMP", "TIME")
MAX_ITEMS = 2  # columns (or aggregates) in one SELECT; a third was only ever a repeat
SIMPLE_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")

COMMON_RULES = r"""
str ::= "'" [^'\n\\]{1,40} "'"
like ::= "'%" [^'%\n\\]{1,30} "%'"
num ::= "-"? [0-9]{1,12} ("." [0-9]{1,6})?
cmp ::= " > " | " < " | " >= " | " <= " | " = " | " <> "
dir ::= " DESC" | " ASC"
limit ::= " LIMIT " [1-9] [0-9]?
"""


@lru_cache(maxsize=1)
def reserved_words() -> frozenset[str]:
    """DuckDB's reserved keywords (an identifier spelled like one must be quoted)."""
    import duckdb

    with duckdb.connect() as con:
        return frozenset(r[0].upper() for r in con.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'").fetchall())


def sql_ident(name: str) -> str:
    """`name` as DuckDB reads it: bare when it is a plain lower-case word, else double-quoted."""
    if SIMPLE_IDENT.match(name) and name.upper() not in reserved_words():
        return name
    return '"' + name.replace('"', '""') + '"'


def kind_of(sql_type: str) -> str:
    """number, time, bool, text or other: what a column's type lets a query do with it."""
    base = sql_type.upper().split("(")[0].strip()
    if base.endswith("[]") or base.startswith(("STRUCT", "MAP", "UNION", "LIST")):
        return "other"
    if base in NUMERIC:
        return "number"
    if base.startswith(TIME) or base == "INTERVAL":
        return "time"
    if base == "BOOLEAN":
        return "bool"
    if base in ("VARCHAR", "TEXT", "STRING", "CHAR", "BPCHAR", "UUID", "ENUM") or base.startswith("VARCHAR"):
        return "text"
    return "other"


def _literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alt(texts: list[str]) -> str:
    return " | ".join(_literal(t) for t in texts)


SHAPES = ("count", "count_where", "aggregate", "aggregate_where", "group", "list", "list_where", "top")


def _shape_form(rule: str, shape: str, source: str, columns: list[str], has_stats: bool, has_order: bool) -> str | None:
    """The alternatives of one query shape (see `SHAPES`) over one FROM clause, or None when its columns cannot
    make that shape (no numeric or time column for `aggregate`)."""
    counts = f'("count(*)" | "count(DISTINCT " {rule}-col ")") {source}'
    items = f'{rule}-col (", " {rule}-col){{0,{MAX_ITEMS - 1}}} {source}'
    if shape in ("aggregate", "aggregate_where") and not has_stats:
        return None
    grouped = [f'{_literal(c)} ", " {rule}-agg {source} {rule}-where? {_literal(" GROUP BY " + c)}' for c in columns]
    ranked = [f'{_literal(c)} {source} {rule}-where? {_literal(" GROUP BY " + c)} " ORDER BY " {rule}-agg dir limit' for c in columns]
    if has_order:
        ranked.insert(0, f'{items} {rule}-where? " ORDER BY " {rule}-ord dir limit')
    return {
        "count": counts,
        "count_where": f"{counts} {rule}-where",
        "aggregate": f"{rule}-stat {source}",
        "aggregate_where": f"{rule}-stat {source} {rule}-where",
        "group": " | ".join(f"({g})" for g in grouped),
        "list": f'"DISTINCT "? {items}',
        "list_where": f"{items} {rule}-where",
        "top": " | ".join(f"({r})" for r in ranked),
    }[shape]


def _query_rules(rule: str, from_clause: str, columns: list[tuple[str, str]], shape: str | None = None,
                 agg_first: bool = False) -> list[str]:
    """Rules `rule-q` and its parts for one FROM clause; `columns` are (SQL text, type) pairs; [] when the
    columns cannot make `shape`.

    Without a `shape`, three forms, so that every query binds: columns only; aggregates only; or a column,
    optionally with an aggregate, grouped by that column (one alternative per column: `c[, agg] FROM t ...
    GROUP BY c`; with `agg_first`, also `agg, c FROM t ... GROUP BY c`). With a shape, its form only (`_shape_form`)."""
    by_kind: dict[str, list[str]] = {}
    for text, sql_type in columns:
        by_kind.setdefault(kind_of(sql_type), []).append(text)
    numbers, ordered = by_kind.get("number", []), by_kind.get("number", []) + by_kind.get("time", [])
    texts, bools = by_kind.get("text", []), by_kind.get("bool", [])
    rules = [f"{rule}-col ::= {_alt([c for c, _ in columns])}"]
    aggs = ['"count(*)"', f'"count(DISTINCT " {rule}-col ")"']
    stats = []
    conds = [f'{rule}-col (" IS NULL" | " IS NOT NULL")']
    if numbers:
        rules.append(f"{rule}-num ::= {_alt(numbers)}")
        stats.append(f'("avg(" | "sum(") {rule}-num ")"')
        conds.append(f"{rule}-num cmp num")
    if ordered:
        rules.append(f"{rule}-ord ::= {_alt(ordered)}")
        stats.append(f'("min(" | "max(") {rule}-ord ")"')
    if texts:
        rules.append(f"{rule}-text ::= {_alt(texts)}")
        conds.append(f'{rule}-text (" = " | " <> ") str')
        conds.append(f'{rule}-text " ILIKE " like')
    if bools:
        rules.append(f"{rule}-bool ::= {_alt(bools)}")
        conds.append(f'"NOT "? {rule}-bool')
    source = _literal(" FROM " + from_clause)
    rules += [
        f"{rule}-agg ::= " + " | ".join(aggs + stats),
        f"{rule}-cond ::= " + " | ".join(conds),
        f'{rule}-where ::= " WHERE " {rule}-cond (" AND " {rule}-cond)?',
    ]
    if stats:
        rules.append(f"{rule}-stat ::= " + " | ".join(stats))
    if shape is not None:
        form = _shape_form(rule, shape, source, [c for c, _ in columns], bool(stats), bool(ordered))
        return rules + [f"{rule}-q ::= {form}"] if form else []
    ordering = lambda c: f'(" ORDER BY " ({rule}-agg | {_literal(c)}) dir)? limit?'  # noqa: E731
    grouped = [f'{_literal(c)} (", " {rule}-agg)? {source} {rule}-where? {_literal(" GROUP BY " + c)} {ordering(c)}' for c, _ in columns]
    if agg_first:
        grouped += [f'{rule}-agg {_literal(", " + c)} {source} {rule}-where? {_literal(" GROUP BY " + c)} {ordering(c)}' for c, _ in columns]
    rules += [
        f'{rule}-plain ::= "DISTINCT "? {rule}-col (", " {rule}-col){{0,{MAX_ITEMS - 1}}} {source} {rule}-where? '
        f'(" ORDER BY " {rule}-col dir)? limit?',
        f'{rule}-aggs ::= {rule}-agg (", " {rule}-agg){{0,{MAX_ITEMS - 1}}} {source} {rule}-where?',
        f"{rule}-grouped ::= " + " | ".join(grouped),
        f"{rule}-q ::= {rule}-plain | {rule}-aggs | {rule}-grouped",
    ]
    return rules


def join_key(a: list[tuple[str, str]], b: list[tuple[str, str]]) -> str | None:
    """The id column two tables share (same name and type, named `id` or `..._id`), if any."""
    types = dict(b)
    shared = [name for name, t in a if types.get(name) == t and (name == "id" or name.endswith("_id"))]
    return shared[0] if shared else None


def sql_grammar(tables: dict[str, list[tuple[str, str]]], shape: str | None = None, agg_first: bool = False) -> str:
    """The GBNF grammar of the queries allowed over `tables` (name -> [(column, type)], best first): over the
    first table, or the first joined with another; of one of `SHAPES` only when `shape` is given (raises
    ValueError when no table can make it); `agg_first` lets a grouped query name its aggregate first."""
    if not tables:
        raise ValueError("no table to write a query over")
    if shape is not None and shape not in SHAPES:
        raise ValueError(f"unknown query shape {shape!r}; one of {', '.join(SHAPES)}")
    usable = {name: [(c, t) for c, t in cols if kind_of(t) != "other"] for name, cols in tables.items()}
    best, *others = list(usable)
    rules = _query_rules("t0", sql_ident(best), [(sql_ident(c), t) for c, t in usable[best]], shape, agg_first) if usable[best] else []
    queries = ["t0-q"] if rules else []
    for j, other in enumerate(others, 1):
        key = join_key(tables[best], tables[other])
        if key is None:
            continue
        qa, qb, k = sql_ident(best), sql_ident(other), sql_ident(key)
        cols = [(f"{q}.{sql_ident(c)}", t) for q, name in ((qa, best), (qb, other)) for c, t in usable[name]]
        joined = _query_rules(f"j{j}", f"{qa} JOIN {qb} ON {qb}.{k} = {qa}.{k}", cols, shape, agg_first)
        rules += joined
        queries += [f"j{j}-q"] if joined else []
    if not queries:
        raise ValueError("no table with a usable column to write a query over")
    return "\n".join([f'root ::= " " ({" | ".join(queries)}) ";"', *rules]) + COMMON_RULES


def answer_schema() -> dict:
    """The JSON schema of an answer for structured outputs: the query, in one string field."""
    return {"type": "object", "properties": {"sql": {"type": "string", "description": "one DuckDB SELECT over the listed tables"}},
            "required": ["sql"], "additionalProperties": False}
