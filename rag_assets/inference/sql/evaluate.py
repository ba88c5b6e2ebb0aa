"""`rag sql-eval`: execution accuracy of the SQL assistant on the gold questions.

A question counts as correct when the generated query's result equals the gold query's result as a
multiset of rows (order compared only when the gold SQL has a top-level ORDER BY). Values are
compared normalised (numbers to 6 significant digits); columns may come in any order. A gold query
that keeps the top rows (`ORDER BY ... LIMIT n`) accepts any rows tied with its n-th row on the sort
keys: "which document has the most chunks?" has several right answers when two documents tie.

Every question is filed under the shape of its gold SQL (`question_shape`: join, top-k, group, count,
filter, aggregate, list), so a score says which kinds of question a model can answer.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlglot

from rag_assets.inference.multi_query import rewrite_question
from rag_assets.inference.sql import assistant
from rag_assets.inference.sql.examples import pick_examples
from rag_assets.inference.sql.executor import connect_readonly, run_query
from rag_assets.inference.sql.gold import GOLD, GoldQuestion
from rag_assets.inference.sql.plan import PLANS
from rag_assets.inference.sql.schema_index import SchemaIndex

MAX_ROWS = 10_000
MAX_PERMUTED_COLUMNS = 5


def _norm(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{float(value):.6g}"
    return str(value)


def is_ordered(sql: str) -> bool:
    """Whether the query's outermost SELECT sorts its rows."""
    return bool(sqlglot.parse_one(sql, read="duckdb").args.get("order"))


def _column_orders(width: int):
    return itertools.permutations(range(width)) if width <= MAX_PERMUTED_COLUMNS else [tuple(range(width))]


def same_result(gold: list[list], got: list[list], ordered: bool) -> bool:
    """Equal as row lists (ordered) or row multisets, allowing the generated columns in any order."""
    if len(gold) != len(got):
        return False
    gold_rows = [tuple(map(_norm, r)) for r in gold]
    got_rows = [tuple(map(_norm, r)) for r in got]
    width = len(gold_rows[0]) if gold_rows else 0
    if not gold_rows:
        return True
    if any(len(r) != width for r in got_rows):
        return False
    expected = gold_rows if ordered else Counter(gold_rows)
    for perm in _column_orders(width):
        rows = [tuple(r[i] for i in perm) for r in got_rows]
        if (rows if ordered else Counter(rows)) == expected:
            return True
    return False


@dataclass(frozen=True)
class TopRows:
    """What a correct answer to an `ORDER BY ... LIMIT n` gold query holds: every row ranked strictly
    above the n-th row's sort key (`must`, in order), then rows tied with the n-th row (`tied`) to make n."""

    must: list[tuple]
    tied: list[tuple]
    n: int


def top_rows_query(gold_sql: str) -> tuple[str, int, int] | None:
    """The gold query without its LIMIT and with its sort keys as extra trailing columns, the limit, and
    the number of key columns; None when the query is not a top-level `ORDER BY ... LIMIT n`."""
    tree = sqlglot.parse_one(gold_sql, read="duckdb")
    order, limit = tree.args.get("order"), tree.args.get("limit")
    if not isinstance(tree, sqlglot.exp.Select) or not order or not limit or tree.args.get("offset"):
        return None
    try:
        n = int(limit.expression.name)
    except (AttributeError, ValueError):
        return None
    projections = tree.expressions
    keys = []
    for i, ordered in enumerate(order.expressions):
        key = ordered.this
        if isinstance(key, sqlglot.exp.Literal) and key.is_int:  # ORDER BY 2
            key = projections[int(key.name) - 1].unalias()
        keys.append(sqlglot.exp.alias_(key.copy(), f"__tie_key_{i}"))
    query = tree.copy()
    query.set("limit", None)
    query.set("expressions", [*projections, *keys])
    return query.sql(dialect="duckdb"), n, len(keys)


def top_rows(rows_with_keys: list[list], n: int, n_keys: int) -> TopRows:
    """Split the ordered rows of `top_rows_query` around the n-th row's sort key."""
    rows = [(tuple(map(_norm, r[:-n_keys])), tuple(map(_norm, r[-n_keys:]))) for r in rows_with_keys]
    if len(rows) <= n:
        return TopRows([r for r, _ in rows], [], len(rows))
    cutoff = rows[n - 1][1]
    first_tied = next(i for i, (_, key) in enumerate(rows) if key == cutoff)
    return TopRows([r for r, _ in rows[:first_tied]], [r for r, key in rows if key == cutoff], n)


def same_top_rows(top: TopRows, got: list[list], ordered: bool) -> bool:
    """Whether `got` is one of the correct answers described by `top` (columns in any order)."""
    if len(got) != top.n:
        return False
    got_rows = [tuple(map(_norm, r)) for r in got]
    width = len((top.must or top.tied or [()])[0])
    if any(len(r) != width for r in got_rows):
        return False
    for perm in _column_orders(width):
        rows = [tuple(r[i] for i in perm) for r in got_rows]
        head, rest = rows[:len(top.must)], rows[len(top.must):]
        if ordered and head != top.must:
            continue
        if Counter(head) == Counter(top.must) and not Counter(rest) - Counter(top.tied):
            return True
    return False


SHAPES = ("count", "group", "filter", "join", "top-k", "aggregate", "list")


def question_shape(gold_sql: str) -> str:
    """The shape of a gold query, first match of: join, top-k (ORDER BY + LIMIT), group (GROUP BY),
    count (a count without grouping), filter (WHERE), aggregate (another aggregate), list."""
    tree = sqlglot.parse_one(gold_sql, read="duckdb")
    if tree.find(sqlglot.exp.Join):
        return "join"
    if tree.args.get("order") and tree.args.get("limit"):
        return "top-k"
    if tree.args.get("group"):
        return "group"
    if tree.find(sqlglot.exp.Count):
        return "count"
    if tree.args.get("where"):
        return "filter"
    if tree.find(sqlglot.exp.AggFunc):
        return "aggregate"
    return "list"


@dataclass
class QuestionScore:
    question: str
    gold_sql: str
    sql: str
    correct: bool
    error: str = ""
    tables: list[str] = field(default_factory=list)
    seconds: float = 0.0
    shape: str = ""
    gold_empty: bool = False  # the gold answer has no rows: any query returning none scores as correct


@dataclass
class SqlEvalResult:
    database: str
    questions: int
    correct: int
    executed: int  # generated queries that passed the guard and ran
    models: list[str]
    scores: list[QuestionScore]
    timings: dict[str, float]
    llm: dict

    @property
    def accuracy(self) -> float:
        return round(self.correct / self.questions, 4) if self.questions else 0.0

    def by_shape(self) -> dict[str, dict[str, int]]:
        """Correct and asked questions per shape."""
        out: dict[str, dict[str, int]] = {}
        for s in self.scores:
            row = out.setdefault(s.shape, {"correct": 0, "questions": 0})
            row["correct"] += s.correct
            row["questions"] += 1
        return {shape: out[shape] for shape in SHAPES if shape in out}

    def to_dict(self) -> dict:
        return {**asdict(self), "accuracy": self.accuracy, "by_shape": self.by_shape()}


def gold_rows(database: Path, q: GoldQuestion) -> list[list]:
    with connect_readonly(database) as con:
        return run_query(con, q.sql, max_rows=MAX_ROWS, timeout_s=30).rows


def is_correct(database: Path, q: GoldQuestion, got: list[list]) -> bool:
    """Whether `got` answers the gold question (ties at a LIMIT's cut-off accepted)."""
    ordered = is_ordered(q.sql)
    top = top_rows_query(q.sql)
    if top is None:
        return same_result(gold_rows(database, q), got, ordered)
    sql, n, n_keys = top
    with connect_readonly(database) as con:
        rows = run_query(con, sql, max_rows=MAX_ROWS, timeout_s=30).rows
    return same_top_rows(top_rows(rows, n, n_keys), got, ordered)


def run_sql_eval(database: Path, llm, index: SchemaIndex, questions: list[GoldQuestion] = GOLD, n_rephrasings: int = 3,
                 max_tables: int = 3, timeout_s: float = 10.0, log: Callable[[str], None] = lambda m: None,
                 constrained: bool = True, plan: str = "example-shape") -> SqlEvalResult:
    """Ask every gold question through the assistant's pipeline (`llm` is an `LLMResource`) and score it;
    `constrained=False` lets the model write free text (no grammar or schema, no examples), as before issue #13;
    `plan` is one of `PLANS`: "example-shape" writes under the grammar of the nearest worked example's shape
    (`assistant.generate_planned_sql`), "two-step" has the model name the shape first (one more call), "one-step"
    is one grammar for every question, "agg-first" the same whose grouped form may also start with its aggregate."""
    if plan not in PLANS:
        raise ValueError(f"unknown plan {plan!r}; one of {', '.join(PLANS)}")
    started = time.perf_counter()
    scores = []
    for i, q in enumerate(questions, 1):
        t0 = time.perf_counter()
        rewrites = rewrite_question(llm.complete, q.question, n_rephrasings, False)
        schema = assistant.select_schema(index, database, [q.question, *rewrites], max_tables)
        if constrained:
            _, _, sql = assistant.write_sql(llm.complete, q.question, schema.schema, False, schema.columns, plan,
                                            examples=pick_examples(q.question))
        else:
            _, sql = assistant.generate_sql(llm.complete, q.question, schema.schema, False)
        outcome = assistant.check_and_run(database, sql, MAX_ROWS, timeout_s, schema.known_tables)
        correct = outcome.ok and not outcome.truncated and is_correct(database, q, outcome.rows)
        scores.append(QuestionScore(q.question, q.sql, outcome.sql, correct, outcome.error, schema.tables, round(time.perf_counter() - t0, 3),
                                    question_shape(q.sql), not gold_rows(database, q)))
        log(f"[{i}/{len(questions)}] {'OK ' if correct else 'BAD'} {q.question} -> {outcome.sql!r}" + (f" ({outcome.error[:120]})" if outcome.error else ""))
    models = sorted(llm.ledger.totals()["llm_models"])
    return SqlEvalResult(str(database), len(scores), sum(s.correct for s in scores), sum(not s.error for s in scores), models, scores,
                         {"total_s": round(time.perf_counter() - started, 2), "llm_s": round(llm.ledger.totals()["llm_latency_s"], 2)},
                         llm.ledger.totals())
