"""The SQL assistant on a real platform: the warehouse built from an in-process ingestion, the schema index
in Milvus Lite, the gold SQL, and `sql_job` end to end (loopback model, bundled local model, CLI, sql-eval)."""

import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from loopback.openai_faults import OpenAIFaultServer
from rag_assets.cli import main
from rag_assets.inference.sql.assets import open_schema_index, schema_index, warehouse
from rag_assets.inference.sql.assistant import check_and_run, index_database
from rag_assets.inference.sql.evaluate import run_sql_eval
from rag_assets.inference.sql.executor import connect_readonly, run_query
from rag_assets.inference.sql.gold import GOLD
from rag_assets.inference.sql.job import sql_job
from rag_assets.inference.sql.resource import WarehouseResource
from rag_assets.inference.sql.schema_index import database_key, rank_tables
from rag_assets.pipeline import QUIET_LOGS
from resources.llm import LLMResource
from sql_platform import PAYROLL_SECRET, Platform, build_platform, loopback_policy, sql_responder

pytestmark = pytest.mark.slow
EXPECT_EMPTY = {"Which runs failed?"}  # every ingestion run of the test platform succeeds


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, embedding_cache: Path) -> Platform:
    return build_platform(tmp_path_factory.mktemp("sql_platform"), embedding_cache)


@pytest.fixture(autouse=True)
def rag_home(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAG_HOME", str(platform.home))
    return platform.home


def query(platform: Platform, sql: str) -> list[list]:
    with connect_readonly(platform.warehouse) as con:
        return run_query(con, sql, max_rows=10_000).rows


def test_the_warehouse_holds_the_platform_data(platform: Platform):
    assets = platform.workspace.root / "assets"
    docs = pl.concat([pl.read_parquet(p) for p in (assets / "documents").glob("*.parquet")])
    chunks = pl.concat([pl.read_parquet(p) for p in (assets / "chunks").glob("*.parquet")])
    assert query(platform, "SELECT count(*) FROM documents") == [[docs.height]]
    assert query(platform, "SELECT count(*) FROM chunks") == [[chunks.height]]
    assert query(platform, "SELECT name, kind, sensitive FROM sources ORDER BY name") == [["handbook", "markdown", False], ["hr", "markdown", True]]
    assert query(platform, "SELECT locator, error FROM documents WHERE error IS NOT NULL") == [["empty.md", "empty file (whitespace only)"]]
    runs = query(platform, "SELECT source, status FROM runs WHERE source IS NOT NULL ORDER BY source")
    assert runs == [["handbook", "SUCCESS"], ["hr", "SUCCESS"]]
    assert query(platform, "SELECT mode FROM eval_results ORDER BY ndcg_at_10 DESC LIMIT 1") == [["hybrid"]]
    assert query(platform, "SELECT count(*) FROM chunks c JOIN documents d USING (doc_id)") == [[chunks.height]]


def test_every_gold_query_passes_the_guard_and_returns_rows(platform: Platform):
    assert len(GOLD) >= 20
    for q in GOLD:
        outcome = check_and_run(platform.warehouse, q.sql, 1000, 10)
        assert outcome.ok, (q.question, outcome.error)
        assert bool(outcome.rows) != (q.question in EXPECT_EMPTY), (q.question, outcome.rows)
        if q.question not in EXPECT_EMPTY and len(outcome.rows) == 1:
            assert all(v is not None for v in outcome.rows[0]), (q.question, outcome.rows)


def test_the_schema_index_finds_the_tables_a_question_needs(platform: Platform):
    res = platform.workspace.resources()
    index = open_schema_index(res["milvus"], res["embedder"])
    key = database_key(platform.warehouse)
    for question, table in [("How many tokens do chunks have on average?", "chunks"), ("Which runs failed?", "runs"),
                            ("What was the best nDCG score of the retrieval evaluation?", "eval_results"),
                            ("Which sources are sensitive?", "sources"), ("What are the titles of the documents?", "documents")]:
        top = rank_tables(index.search(key, [question], 12))[0][0]
        assert top == table, (question, top)
    top3 = {q.question: [t for t, _ in rank_tables(index.search(key, [q.question], 12))[:3]] for q in GOLD}
    covered = [q.question for q in GOLD if set(q.tables) <= set(top3[q.question])]
    assert len(covered) >= 0.9 * len(GOLD), {q: t for q, t in top3.items() if q not in covered}


def test_the_schema_index_is_synced_idempotently_and_hides_sensitive_samples(platform: Platform):
    res = platform.workspace.resources()
    index = open_schema_index(res["milvus"], res["embedder"])
    key, _, counts = index_database(index, platform.warehouse)
    assert counts["inserted"] == 0 and counts["deleted"] == 0 and counts["unchanged"] == index.count(key) > 40
    again = dg.materialize([warehouse, schema_index], instance=platform.workspace.instance, run_config=QUIET_LOGS,
                           resources={**res, "warehouse_db": WarehouseResource(path=str(platform.warehouse))})
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in again.get_asset_materialization_events()}
    assert meta["schema_index"]["collection"].value.startswith("schema__")
    assert meta["warehouse"]["rows_runs"].value >= 3  # the first warehouse run is now in the runs table
    assert meta["schema_index"]["inserted"].value == meta["schema_index"]["deleted"].value <= 8  # only docs of `runs` columns changed
    texts = [h.text for h in index.search(key, ["payroll salary code", "document text"], 50)[0]]
    assert texts and not any("ZEBRA" in t for t in texts) and PAYROLL_SECRET not in " ".join(texts)


def loopback_llm(tmp_path: Path, server: OpenAIFaultServer) -> LLMResource:
    return LLMResource(policy_path=str(loopback_policy(tmp_path / "policy.yaml", server.base_url)), openai_api_key="sk-test")


GOLD_BY_QUESTION = {q.question: q.sql for q in GOLD}


def test_sql_job_answers_with_the_sql_and_its_table(platform: Platform, tmp_path: Path):
    question = "How many chunks does each source have?"
    with OpenAIFaultServer(responder=sql_responder(lambda q: GOLD_BY_QUESTION[q])) as server:
        result = sql_job.execute_in_process(run_config={"ops": {"reword": {"config": {"question": question}}}},
                                            resources=platform.resources(loopback_llm(tmp_path, server)), instance=dg.DagsterInstance.ephemeral())
        prompts = [r.body for r in server.requests.snapshot()]
    out = result.output_for_node("answer")
    assert result.success and not out["error"]
    assert out["sql"] == "SELECT source, COUNT(*) FROM chunks GROUP BY source"
    expected = query(platform, "SELECT source, count(*) FROM chunks GROUP BY source")
    assert sorted(out["rows"]) == sorted(expected) and out["columns"] == ["source", "count_star()"]
    assert len(out["rewrites"]) == 3 and "chunks" in out["tables"]
    assert "| source | count_star() |" in out["answer"]
    assert len(prompts) == 2  # one reword call (fast tier), one SQL call (strong tier)
    sql_prompt = json.dumps(prompts[1])
    assert "CREATE TABLE chunks" in sql_prompt and "ZEBRA" not in sql_prompt
    output_meta = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key == "answer")
    entries = output_meta.event_specific_data.metadata
    assert entries["sql"].value.startswith("```sql") and entries["result"].data["sql"] == out["sql"]
    assert (platform.home / "sql_answers" / f"{result.run_id}.json").exists()


def test_sql_job_with_the_bundled_local_model_ends_with_a_result_or_a_clear_error(platform: Platform):
    llm = LLMResource(provider="local")
    result = sql_job.execute_in_process(
        run_config={"ops": {"reword": {"config": {"question": "How many documents are there?", "n_rephrasings": 1, "max_tokens": 96}}}},
        resources=platform.resources(llm), instance=dg.DagsterInstance.ephemeral())
    out = result.output_for_node("answer")
    assert result.success and out["sql"]
    if out["error"]:
        assert out["error_kind"] in ("rejected", "error", "timeout") and out["error"].startswith(("query rejected: ", "query failed: "))
    else:
        assert out["columns"] and isinstance(out["rows"], list)
    assert out["llm"]["llm_models"] == {"local/gemma-3-270m-q4_k_m": 2}


def test_rag_sql_local_json_and_sql_eval(platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    res = platform.workspace.resources()
    with OpenAIFaultServer(responder=sql_responder(lambda q: GOLD_BY_QUESTION.get(q, "SELECT count(*) FROM documents"))) as server:
        policy = loopback_policy(tmp_path / "policy.yaml", server.base_url)
        for name, value in {"RAG_LLM_POLICY": str(policy), "OPENAI_API_KEY": "sk-test", "RAG_MILVUS_URI": res["milvus"].uri,
                            "RAG_SOURCES": str(platform.workspace.sources_file), "RAG_WAREHOUSE": str(platform.warehouse),
                            "RAG_ASSETS_DIR": str(platform.workspace.root / "assets")}.items():
            monkeypatch.setenv(name, value)
        assert main(["sql", "How many documents are there?", "--local", "--json", "--rephrasings", "1"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert set(out) >= {"answer", "sql", "columns", "rows", "run_id", "timings"}
        assert out["rows"] == query(platform, "SELECT count(*) FROM documents") and out["timings"]["total_s"] > 0

        assert main(["sql-eval", "--json", "--rephrasings", "0", "--database", str(platform.warehouse)]) == 0
        report = json.loads(capsys.readouterr().out)
    wrong = [(s["question"], s["sql"], s["error"]) for s in report["scores"] if not s["correct"]]
    assert report["questions"] == len(GOLD) and not wrong and report["accuracy"] == 1.0, wrong
    assert report["models"] == ["openai/loopback-sql"]

    half_right = {q.question: q.sql if i % 2 == 0 else "SELECT name FROM sources WHERE false" for i, q in enumerate(GOLD[:4])}
    with OpenAIFaultServer(responder=sql_responder(half_right.__getitem__)) as server:
        llm = loopback_llm(tmp_path, server)
        scored = run_sql_eval(platform.warehouse, llm, open_schema_index(res["milvus"], res["embedder"]), GOLD[:4], n_rephrasings=0)
    assert [s.correct for s in scored.scores] == [True, False, True, False] and scored.accuracy == 0.5 and scored.executed == 4


def test_sql_job_asks_about_any_duckdb_file_and_builds_a_missing_warehouse(platform: Platform, tmp_path: Path):
    import duckdb

    shop = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(shop))
    con.execute("CREATE TABLE customers (id INTEGER, name VARCHAR, city VARCHAR)")
    con.execute("CREATE TABLE orders (id INTEGER, customer_id INTEGER, amount DOUBLE)")
    con.execute("INSERT INTO customers VALUES (1, 'Ada', 'Paris'), (2, 'Linus', 'Oslo')")
    con.execute("INSERT INTO orders VALUES (1, 1, 10.5), (2, 1, 4.5), (3, 2, 7.0)")
    con.execute("COMMENT ON TABLE orders IS 'one row per order a customer placed'")
    con.close()
    answers = {"What did each customer spend in total?":
               "SELECT c.name, sum(o.amount) FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.name",
               "How many sources are declared?": "SELECT count(*) FROM sources"}
    with OpenAIFaultServer(responder=sql_responder(answers.__getitem__)) as server:
        llm = loopback_llm(tmp_path, server)
        result = sql_job.execute_in_process(
            run_config={"ops": {"reword": {"config": {"question": "What did each customer spend in total?", "database": str(shop)}}}},
            resources=platform.resources(llm), instance=dg.DagsterInstance.ephemeral())
        shop_prompt = json.dumps(server.requests.snapshot()[-1].body)
        fresh = tmp_path / "fresh" / "warehouse.duckdb"
        resources = {**platform.resources(llm), "warehouse_db": WarehouseResource(path=str(fresh), eval_results=str(tmp_path / "none.jsonl"))}
        built = sql_job.execute_in_process(run_config={"ops": {"reword": {"config": {"question": "How many sources are declared?"}}}},
                                           resources=resources, instance=dg.DagsterInstance.ephemeral())
    out = result.output_for_node("answer")
    assert not out["error"] and sorted(out["rows"]) == [["Ada", 15.0], ["Linus", 7.0]] and set(out["tables"]) == {"customers", "orders"}
    assert "CREATE TABLE orders" in shop_prompt and "CREATE TABLE documents" not in shop_prompt  # each database its own schema docs
    assert fresh.is_file() and built.output_for_node("answer")["rows"] == [[2]]
