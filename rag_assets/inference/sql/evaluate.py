"""`rag sql-eval`: execution accuracy of the SQL assistant on the gold questions.

A question counts as correct when the generated query's result equals the gold query's result as a
multiset of rows (order compared only when the gold SQL has a top-level ORDER BY). Values are
compared normalised (numbers to 6 significant digits); columns may come in any order.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlglot

from rag_assets.inference.sql import assistant
from rag_assets.inference.sql.executor import connect_readonly, run_query
from rag_assets.inference.sql.gold import GOLD, GoldQuestion
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
    orders = itertools.permutations(range(width)) if width <= MAX_PERMUTED_COLUMNS else [tuple(range(width))]
    expected = gold_rows if ordered else Counter(gold_rows)
    for perm in orders:
        rows = [tuple(r[i] for i in perm) for r in got_rows]
        if (rows if ordered else Counter(rows)) == expected:
            return True
    return False


@dataclass
class QuestionScore:
    question: str
    gold_sql: str
    sql: str
    correct: bool
    error: str = ""
    tables: list[str] = field(default_factory=list)
    seconds: float = 0.0


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

    def to_dict(self) -> dict:
        return {**asdict(self), "accuracy": self.accuracy}


def gold_rows(database: Path, q: GoldQuestion) -> list[list]:
    with connect_readonly(database) as con:
        return run_query(con, q.sql, max_rows=MAX_ROWS, timeout_s=30).rows


def run_sql_eval(database: Path, llm, index: SchemaIndex, questions: list[GoldQuestion] = GOLD, n_rephrasings: int = 3,
                 max_tables: int = 3, timeout_s: float = 10.0, log: Callable[[str], None] = lambda m: None) -> SqlEvalResult:
    """Ask every gold question through the assistant's pipeline (`llm` is an `LLMResource`) and score it."""
    started = time.perf_counter()
    scores = []
    for i, q in enumerate(questions, 1):
        t0 = time.perf_counter()
        rewrites = assistant.reword(llm.complete, q.question, n_rephrasings, False)
        schema = assistant.select_schema(index, database, [q.question, *rewrites], max_tables)
        _, sql = assistant.generate_sql(llm.complete, q.question, schema.schema, False)
        outcome = assistant.check_and_run(database, sql, MAX_ROWS, timeout_s, schema.known_tables)
        correct = outcome.ok and not outcome.truncated and same_result(gold_rows(database, q), outcome.rows, is_ordered(q.sql))
        scores.append(QuestionScore(q.question, q.sql, outcome.sql, correct, outcome.error, schema.tables, round(time.perf_counter() - t0, 3)))
        log(f"[{i}/{len(questions)}] {'OK ' if correct else 'BAD'} {q.question} -> {outcome.sql!r}" + (f" ({outcome.error[:120]})" if outcome.error else ""))
    models = sorted(llm.ledger.totals()["llm_models"])
    return SqlEvalResult(str(database), len(scores), sum(s.correct for s in scores), sum(not s.error for s in scores), models, scores,
                         {"total_s": round(time.perf_counter() - started, 2), "llm_s": round(llm.ledger.totals()["llm_latency_s"], 2)},
                         llm.ledger.totals())
