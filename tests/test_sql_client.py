"""`rag sql` and `client.sql`: options become the `sql_job` run config; the printed shapes."""

import json

import pytest

from rag_assets import cli, client


def test_sql_run_config_puts_the_question_on_the_first_op_and_pins_the_llm():
    config = client.sql_run_config("How many chunks?", provider="openai", model="gpt-4.1-mini", database="/data/x.duckdb",
                                   max_rows=5, sensitive=None)
    assert config == {"ops": {"reword": {"config": {"question": "How many chunks?", "database": "/data/x.duckdb", "max_rows": 5}}},
                      "resources": {"llm": {"config": {"provider": "openai", "model": "gpt-4.1-mini"}}}}
    assert "resources" not in client.sql_run_config("q")


RESULT = {"question": "q", "answer": "| n |\n|---|\n| 3 |", "sql": "SELECT count(*) AS n FROM chunks", "columns": ["n"], "rows": [[3]],
          "truncated": False, "error": "", "tables": ["chunks"], "rewrites": [], "database": "/w.duckdb", "run_id": "r1",
          "timings": {"total_s": 1.0}, "llm": {}}


def test_rag_sql_passes_its_options_to_the_client_and_prints_one_json_object(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr(client, "sql", lambda question, **kw: calls.append((question, kw)) or RESULT)
    (tmp_path / "x.duckdb").touch()
    monkeypatch.chdir(tmp_path)
    code = cli.main(["sql", "How many chunks?", "--json", "--quiet", "--url", "http://127.0.0.1:9", "--provider", "gemini",
                     "--timeout", "30", "--query-timeout", "2", "--max-rows", "7", "--database", "x.duckdb"])
    assert code == 0
    question, kw = calls[0]
    assert question == "How many chunks?" and kw["url"] == "http://127.0.0.1:9" and kw["provider"] == "gemini"
    # the path is sent absolute: the run resolves it in the webserver's working directory, not in ours
    assert kw["timeout_s"] == 30 and kw["query_timeout_s"] == 2 and kw["max_rows"] == 7 and kw["database"] == str(tmp_path / "x.duckdb")
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in ("answer", "sql", "columns", "rows", "run_id", "timings")} == {
        k: RESULT[k] for k in ("answer", "sql", "columns", "rows", "run_id", "timings")}


def test_rag_sql_exits_nonzero_on_a_rejected_query_and_on_a_client_error(monkeypatch: pytest.MonkeyPatch, capsys):
    rejected = {**RESULT, "answer": "query rejected: only SELECT queries are allowed, got DROP", "error": "query rejected: ...",
                "sql": "DROP TABLE chunks", "columns": [], "rows": []}
    monkeypatch.setattr(client, "sql", lambda question, **kw: rejected)
    assert cli.main(["sql", "Drop it", "--quiet"]) == 1
    assert "query rejected" in capsys.readouterr().out

    def unreachable(question, **kw):
        raise client.ClientError("cannot reach the Dagster webserver at http://127.0.0.1:9")
    monkeypatch.setattr(client, "sql", unreachable)
    assert cli.main(["sql", "q", "--quiet"]) == 2
    assert "rag sql: cannot reach" in capsys.readouterr().err


def test_rag_sql_eval_says_what_to_do_without_a_warehouse(tmp_path, capsys):
    assert cli.main(["sql-eval", "--database", str(tmp_path / "missing.duckdb")]) == 2
    assert "materialize the `warehouse` asset first" in capsys.readouterr().err


def test_the_run_config_the_client_sends_is_valid_for_sql_job():
    import dagster as dg

    import definitions

    sql_job = definitions.defs.get_job_def("sql_job")  # bound to the code location's resources
    config = client.sql_run_config("How many chunks?", provider="local", database="/data/x.duckdb", n_rephrasings=1, max_tables=2,
                                   max_rows=5, query_timeout_s=2.0, max_tokens=64, sensitive=True)
    assert dg.validate_run_config(sql_job, config)["ops"]["reword"]["config"]["query_timeout_s"] == 2.0
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.validate_run_config(sql_job, client.sql_run_config("q", timeout_s=2))  # the run's wait is not a job option
