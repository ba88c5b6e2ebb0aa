"""The two-step plan (issue #13): the model first names the shape of the query that answers the question,
then writes the query under a grammar of that shape only (`grammar.sql_grammar(..., shape)`).

A one-step grammar lets a tiny model start `count(*)` for "how many ... does each source have?" and then
commits it to the aggregate-only form; asked for the shape first, it sees a choice between a handful of
labels, each shown on the nearest worked examples (`examples.EXAMPLES`, labelled by `sql_shape` of their
SQL). Step 1 is a completion held to the labels (a grammar, or a JSON enum for structured outputs).

The default (`PLANS`) skips the model in step 1: the shape is that of the nearest worked example
(`nearest_shape`), which the 270M model names less often right than the examples do (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from functools import lru_cache

from rag_assets.inference.sql.examples import pick_examples
from rag_assets.inference.sql.grammar import SHAPES
from rag_assets.llm.types import Completion, Constraint

PLAN_SYSTEM = "You name the shape of the SQL query that answers a question about a database. Answer with one shape label."
SHAPE_HELP = {
    "count": "count rows or distinct values",
    "count_where": "count the rows that meet a condition",
    "aggregate": "one average, total, minimum or maximum",
    "aggregate_where": "an average, total, minimum or maximum of the rows that meet a condition",
    "group": "a count or total for each value of a column (GROUP BY)",
    "list": "list columns of every row",
    "list_where": "list the rows that meet a condition",
    "top": "the rows with the highest or lowest value (ORDER BY ... LIMIT)",
}
PLAN_EXAMPLES = 6
# How the constrained generator writes a query, default first: under the grammar of a query shape (the nearest
# example's, or the one the model names first), or one grammar for every question (optionally letting a grouped
# query start with its aggregate). Measured in docs/benchmarks.md.
PLANS = ("example-shape", "two-step", "one-step", "agg-first")


@lru_cache(maxsize=256)
def sql_shape(sql: str) -> str:
    """The shape label (`grammar.SHAPES`) of a query: top (ORDER BY + LIMIT), group (GROUP BY), count /
    aggregate (a count / another aggregate), else list; `_where` added to the last three when they filter."""
    import sqlglot  # here: the CLI and the code location import this module, and only labelling parses SQL

    tree = sqlglot.parse_one(sql, read="duckdb")
    if tree.args.get("order") and tree.args.get("limit"):
        return "top"
    if tree.args.get("group"):
        return "group"
    where = "_where" if tree.args.get("where") else ""
    if tree.find(sqlglot.exp.Count):
        return "count" + where
    if tree.find(sqlglot.exp.AggFunc):
        return "aggregate" + where
    return "list" + where


def plan_prompt(question: str, k: int = PLAN_EXAMPLES) -> tuple[str, str]:
    """(system, prompt) of step 1: the labels, the `k` worked examples nearest the question with their
    shapes (nearest last), then the question, primed with `Shape:`."""
    labels = "\n".join(f"{name}: {SHAPE_HELP[name]}" for name in SHAPES)
    shown = "".join(f"Question: {q}\nShape: {sql_shape(sql)}\n\n" for q, sql in pick_examples(question, k))
    return PLAN_SYSTEM, f"Shapes:\n{labels}\n\n{shown}Question: {question}\nShape:"


def plan_constraint() -> Constraint:
    """Step 1's answer: one label (a grammar continuing `Shape:`, or a JSON object with an enum field). The
    grammar ends with the newline the examples put after a label (a stop sequence): without it, a model that
    wrote `count` can only end the text or go on to `count_where`, and it goes on, as the examples never end
    a text after a label."""
    grammar = 'root ::= " " (' + " | ".join(f'"{name}"' for name in SHAPES) + ') "\\n"'
    schema = {"type": "object", "properties": {"shape": {"type": "string", "enum": list(SHAPES)}}, "required": ["shape"],
              "additionalProperties": False}
    return Constraint(grammar=grammar, json_schema=schema, name="query_shape")


def parse_shape(out: Completion) -> str | None:
    """The label a step-1 completion names, or None: the `shape` field of a structured answer, else the
    first word of the text (a server that ignored the schema)."""
    text = out.text
    if out.constrained_by == "json_schema" or text.lstrip().startswith("{"):
        try:
            answer = json.loads(text)
            text = answer.get("shape", "") if isinstance(answer, dict) else ""
        except ValueError:
            pass
    words = str(text).strip().lower().replace("-", "_").split()
    return words[0].strip(".,:;\"'") if words and words[0].strip(".,:;\"'") in SHAPES else None


def nearest_shape(question: str) -> str:
    """Step 1 without the model: the shape of the worked example whose question is nearest (`pick_examples`)."""
    return sql_shape(pick_examples(question, 1)[0][1])


def shape_examples(question: str, shape: str, k: int) -> list[list[str]]:
    """The `k` worked examples nearest the question among those of `shape` (all of them when none has it)."""
    return pick_examples(question, k, where=lambda sql: sql_shape(sql) == shape) or pick_examples(question, k)

