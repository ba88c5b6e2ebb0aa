"""The SQL grammar built from the retrieved schema (issue #13): real columns only, typed aggregates, quoted
identifiers, joins on shared ids; and the bundled model, held to it, writes queries the guard accepts."""

from pathlib import Path

import duckdb
import pytest

from rag_assets.inference.sql import assistant
from rag_assets.inference.sql.evaluate import question_shape
from rag_assets.inference.sql.gold import GOLD
from rag_assets.inference.sql.gold_new import HELD_OUT
from rag_assets.inference.sql.grammar import join_key, kind_of, sql_grammar, sql_ident
from rag_assets.llm.types import Completion

DOCS = [("doc_id", "VARCHAR"), ("title", "VARCHAR"), ("n_chars", "INTEGER"), ("updated_at", "TIMESTAMP"), ("sensitive", "BOOLEAN"),
        ("tags", "VARCHAR[]")]
CHUNKS = [("chunk_id", "VARCHAR"), ("doc_id", "VARCHAR"), ("n_tokens", "INTEGER")]
RUNS = [("run_id", "VARCHAR"), ("order", "VARCHAR"), ("Duration S", "DOUBLE")]


def rule(grammar: str, name: str) -> str:
    return next(line for line in grammar.splitlines() if line.startswith(f"{name} ::= "))


def test_identifiers_are_quoted_only_when_they_must_be():
    assert sql_ident("n_tokens") == "n_tokens"
    assert sql_ident("order") == '"order"' and sql_ident("Duration S") == '"Duration S"' and sql_ident('a"b') == '"a""b"'
    assert [kind_of(t) for t in ("INTEGER", "DECIMAL(10,2)", "TIMESTAMP WITH TIME ZONE", "BOOLEAN", "VARCHAR", "VARCHAR[]")] == \
        ["number", "number", "time", "bool", "text", "other"]


def test_the_grammar_offers_real_columns_and_typed_aggregates_only():
    grammar = sql_grammar({"documents": DOCS, "chunks": CHUNKS, "runs": RUNS})
    assert rule(grammar, "t0-num") == 't0-num ::= "n_chars"'  # avg/sum: numeric columns only
    assert rule(grammar, "t0-ord") == 't0-ord ::= "n_chars" | "updated_at"'  # min/max: numbers and times
    assert rule(grammar, "t0-bool") == 't0-bool ::= "sensitive"'
    assert "tags" not in grammar and "*" not in rule(grammar, "t0-col")  # no list column, no bare star
    assert rule(grammar, "t0-q") == "t0-q ::= t0-plain | t0-aggs | t0-grouped"
    assert '"title" (", " t0-agg)? " FROM documents" t0-where? " GROUP BY title"' in rule(grammar, "t0-grouped")  # grouped by what it shows
    assert '" FROM documents JOIN chunks ON chunks.doc_id = documents.doc_id"' in grammar  # shared id: a join
    assert "runs" not in grammar.split("\n", 1)[0] and "t2-q" not in grammar  # queries over the best table (or joins with it)
    runs_first = sql_grammar({"runs": RUNS})
    assert rule(runs_first, "t0-col") == 't0-col ::= "run_id" | "\\"order\\"" | "\\"Duration S\\""'
    assert join_key(DOCS, RUNS) is None and join_key(CHUNKS, DOCS) == "doc_id"


def test_every_question_has_a_shape():
    shapes = {q.sql: question_shape(q.sql) for q in GOLD + HELD_OUT}
    assert shapes["SELECT count(*) FROM documents"] == "count"
    assert shapes["SELECT source, count(*) FROM documents GROUP BY source"] == "group"
    assert shapes["SELECT name FROM sources WHERE sensitive"] == "filter"
    assert shapes["SELECT title FROM documents ORDER BY n_chars DESC LIMIT 1"] == "top-k"
    assert question_shape(HELD_OUT[-1].sql) == "join" and shapes["SELECT avg(n_tokens) FROM chunks"] == "aggregate"
    assert {q.question for q in HELD_OUT}.isdisjoint(q.question for q in GOLD) and len(HELD_OUT) >= 15


def test_a_structured_answer_is_read_from_its_sql_field():
    done = lambda text, by: Completion(text, 1, 1, 0.0, "openai", "m", by)  # noqa: E731
    assert assistant.completion_sql(done('{"sql": "SELECT count(*) FROM documents"}', "json_schema")) == "SELECT count(*) FROM documents"
    assert assistant.completion_sql(done(" count(*) FROM documents", "grammar")) == "SELECT count(*) FROM documents"
    assert assistant.completion_sql(done("SELECT 1", "json_schema")) == "SELECT 1"  # a server that ignored the schema


@pytest.mark.slow
def test_the_bundled_model_held_to_the_grammar_writes_queries_the_guard_accepts(tmp_path: Path):
    from resources.llm import LLMResource

    db = tmp_path / "shop.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE orders (order_id VARCHAR, customer VARCHAR, amount DOUBLE, paid BOOLEAN)")
        con.execute("INSERT INTO orders VALUES ('a', 'Ada', 10.5, true), ('b', 'Ada', 4.5, false), ('c', 'Linus', 7.0, true)")
    columns = {"orders": [[c, t] for c, t in (("order_id", "VARCHAR"), ("customer", "VARCHAR"), ("amount", "DOUBLE"), ("paid", "BOOLEAN"))]}
    schema = "CREATE TABLE orders (order_id VARCHAR, customer VARCHAR, amount DOUBLE, paid BOOLEAN);"
    llm = LLMResource(provider="local")
    for question in ("How many orders are there?", "What is the total amount per customer?", "Which orders are unpaid?"):
        raw, sql = assistant.generate_sql(llm.complete, question, schema, False, 96, columns=columns)
        outcome = assistant.check_and_run(db, sql, 100, 10)
        assert outcome.error_kind in ("", "error"), (question, raw, outcome.error)  # past the guard (DuckDB may still refuse it)
        assert sql.startswith("SELECT ") and " FROM orders" in sql
