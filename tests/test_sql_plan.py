"""The two-step plan of the SQL assistant (issue #13): the shape labels of queries, step 1's answer read
back, and each shape's grammar, which accepts that shape's queries over the retrieved tables and no other."""

import ctypes
import re
from pathlib import Path

import pytest

from rag_assets.inference.sql import assistant
from rag_assets.inference.sql.examples import EXAMPLES
from rag_assets.inference.sql.gold import GOLD
from rag_assets.inference.sql.grammar import SHAPES, sql_grammar
from rag_assets.inference.sql.plan import nearest_shape, parse_shape, plan_constraint, plan_prompt, shape_examples, sql_shape
from rag_assets.llm.types import Completion

DOCS = [("doc_id", "VARCHAR"), ("source", "VARCHAR"), ("title", "VARCHAR"), ("n_chars", "INTEGER"), ("updated_at", "TIMESTAMP"),
        ("sensitive", "BOOLEAN")]
CHUNKS = [("chunk_id", "VARCHAR"), ("doc_id", "VARCHAR"), ("n_tokens", "INTEGER")]
TABLES = {"documents": DOCS, "chunks": CHUNKS}
JOIN = "FROM documents JOIN chunks ON chunks.doc_id = documents.doc_id"
QUERIES = {  # what each shape's grammar must accept (the text after the prompt's `SELECT`)
    "count": [" count(*) FROM documents;", " count(DISTINCT source) FROM documents;"],
    "count_where": [" count(*) FROM documents WHERE sensitive;", " count(*) FROM documents WHERE source = 'docs';"],
    "aggregate": [" max(n_chars) FROM documents;", " avg(chunks.n_tokens) " + JOIN + ";"],
    "aggregate_where": [" sum(n_chars) FROM documents WHERE NOT sensitive;"],
    "group": [" source, count(*) FROM documents GROUP BY source;", f" documents.title, sum(chunks.n_tokens) {JOIN} GROUP BY documents.title;"],
    "list": [" title FROM documents;", " DISTINCT source FROM documents;", " doc_id, title FROM documents;"],
    "list_where": [" title FROM documents WHERE n_chars > 5000;", " doc_id FROM documents WHERE title IS NULL;"],
    "top": [" title FROM documents ORDER BY n_chars DESC LIMIT 3;",
            f" documents.title {JOIN} GROUP BY documents.title ORDER BY count(*) DESC LIMIT 1;"],
}


def test_queries_are_labelled_by_shape():
    labels = {q.sql: sql_shape(q.sql) for q in GOLD}
    assert labels["SELECT count(*) FROM documents"] == "count"
    assert labels["SELECT count(*) FROM runs WHERE status = 'SUCCESS'"] == "count_where"
    assert labels["SELECT source, count(*) FROM documents GROUP BY source"] == "group"
    assert labels["SELECT max(ndcg_at_10) FROM eval_results"] == "aggregate"
    assert labels["SELECT name FROM sources"] == "list" and labels["SELECT name FROM sources WHERE sensitive"] == "list_where"
    assert labels[GOLD[16].sql] == "top"  # which document has the most chunks: a grouped join, ranked
    assert {sql_shape(sql) for _, sql in EXAMPLES} <= set(SHAPES)
    for shape in SHAPES:  # every query of its shape, and no query of another (in the shape's own form)
        assert {sql_shape("SELECT" + sql.rstrip(";")) for sql in QUERIES[shape]} == {shape}


def test_the_plan_prompt_shows_labelled_examples_and_reads_back_one_label():
    system, prompt = plan_prompt("How many chunks does each source have?")
    assert "one shape label" in system and prompt.endswith("Question: How many chunks does each source have?\nShape:")
    assert "Question: How many orders does each customer have?\nShape: group" in prompt  # the nearest example, labelled
    grammar = plan_constraint().grammar
    assert all(f'"{s}"' in grammar for s in SHAPES) and plan_constraint().json_schema["properties"]["shape"]["enum"] == list(SHAPES)
    done = lambda text, by="grammar": Completion(text, 1, 1, 0.0, "local", "m", by)  # noqa: E731
    assert parse_shape(done(" group")) == "group" and parse_shape(done(" count_where")) == "count_where"
    assert parse_shape(done('{"shape": "top"}', "json_schema")) == "top" and parse_shape(done("Top-k, I think", "")) is None
    assert parse_shape(done('{"shape": "pie chart"}', "json_schema")) is None
    assert nearest_shape("How many orders does each city have?") == "group" and nearest_shape("List the names of all sources.") == "list"
    assert all(sql_shape(sql) == "group" for _, sql in shape_examples("How many chunks does each source have?", "group", 3))


def test_step_two_writes_under_the_grammar_of_the_shape_step_one_named():
    calls = []

    def complete(prompt, **kw):
        calls.append((prompt, kw["constraint"]))
        return Completion(" group" if len(calls) == 1 else " source, count(*) FROM documents GROUP BY source", 1, 1, 0.0, "local", "m",
                          "grammar")

    columns = {t: [[c, ty] for c, ty in cols] for t, cols in TABLES.items()}
    shape, _, sql = assistant.generate_planned_sql(complete, "How many documents does each source have?", "CREATE TABLE ...", False, columns)
    assert (shape, sql) == ("group", "SELECT source, count(*) FROM documents GROUP BY source")
    assert calls[1][1].grammar == sql_grammar(TABLES, "group")
    shown = re.findall(r"SQL: (.*);", calls[1][0])
    assert len(shown) == 3 and all(sql_shape(sql) == "group" for sql in shown)  # the examples of that shape only
    calls.clear()
    shape, _, _ = assistant.generate_planned_sql(lambda prompt, **kw: calls.append(kw["constraint"]) or Completion(  # noqa: E731
        " source, count(*) FROM documents GROUP BY source", 1, 1, 0.0, "local", "m", "grammar"),
        "How many documents does each source have?", "CREATE TABLE ...", False, columns, shape_by="example")
    assert shape == "group" and [c.grammar for c in calls] == [sql_grammar(TABLES, "group")]  # the nearest example's shape: one call
    calls.clear()
    text_only = {"sources": [["name", "VARCHAR"], ["kind", "VARCHAR"]]}  # no number to average: back to the one-step grammar
    complete_aggregate = lambda prompt, **kw: calls.append(kw["constraint"]) or Completion(  # noqa: E731
        " aggregate" if len(calls) == 1 else " count(*) FROM sources", 1, 1, 0.0, "local", "m", "grammar")
    shape, _, sql = assistant.generate_planned_sql(complete_aggregate, "What is the average name?", "CREATE TABLE ...", False, text_only)
    assert shape == "" and calls[1].grammar == sql_grammar({"sources": [("name", "VARCHAR"), ("kind", "VARCHAR")]})


def test_a_shape_no_table_can_make_is_refused():
    with pytest.raises(ValueError, match="no table"):
        sql_grammar({"sources": [("name", "VARCHAR")]}, "aggregate")
    with pytest.raises(ValueError, match="unknown query shape"):
        sql_grammar(TABLES, "pie")


@pytest.fixture(scope="module")
def vocab():
    """The bundled model's tokenizer alone (no weights): enough to run llama.cpp's grammar sampler."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from rag_assets.llm.local_model import gguf_path

    return llama_cpp.Llama(model_path=str(gguf_path()), vocab_only=True, verbose=False)


def accepts(llm, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the model write `text` to the end (then only end of text)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(llama_cpp.llama_model_get_vocab(llm.model), grammar.encode(), b"root")
    assert sampler, "llama.cpp could not parse the grammar"
    try:
        for token in [*llm.tokenize(text.encode(), add_bos=False, special=False), llm.token_eos()]:
            data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(llama_cpp.llama_token_data_array(data, 1, -1, False)))
            if data[0].logit == float("-inf"):
                return False
            if token != llm.token_eos():
                llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


def test_each_shape_grammar_accepts_its_queries_and_no_other(vocab):
    for shape in SHAPES:
        grammar = sql_grammar(TABLES, shape)
        for other, queries in QUERIES.items():
            for sql in queries:
                assert accepts(vocab, grammar, sql) == (other == shape), (shape, sql)
    one_step = sql_grammar(TABLES)
    assert accepts(vocab, one_step, " source, count(*) FROM documents GROUP BY source;")
    assert not accepts(vocab, one_step, " count(*) FROM documents") and not accepts(vocab, one_step, " * FROM documents;")
    assert not accepts(vocab, one_step, " count(*), source FROM documents GROUP BY source;")  # the aggregate first: only with agg_first
    assert accepts(vocab, sql_grammar(TABLES, agg_first=True), " count(*), source FROM documents GROUP BY source;")
    assert not accepts(vocab, sql_grammar(TABLES, agg_first=True), " count(*), source FROM documents;")  # still binds


def test_the_plan_grammar_accepts_each_label_only(vocab):
    grammar = plan_constraint().grammar
    assert all(accepts(vocab, grammar, f" {s}\n") for s in SHAPES)
    assert not accepts(vocab, grammar, " count") and not accepts(vocab, grammar, " count_\n")  # whole labels, each ending its line
    assert not accepts(vocab, grammar, " pie\n") and not accepts(vocab, grammar, " count_where and more\n")


def test_the_job_and_the_eval_refuse_an_unknown_generator():
    import dagster as dg

    from rag_assets.inference.sql.evaluate import run_sql_eval
    from rag_assets.inference.sql.job import SqlConfig, variant_plan

    assert variant_plan(SqlConfig(question="How many runs failed?", generator="two-step"))["generator"] == "two-step"
    with pytest.raises(dg.Failure, match="unknown generator 'three-step'"):
        variant_plan(SqlConfig(question="How many runs failed?", generator="three-step"))
    with pytest.raises(ValueError, match="unknown plan"):
        run_sql_eval(Path("unused.duckdb"), None, None, GOLD[:1], plan="three-step")
