"""`sql_job` takes a variant (issue #10): it pins the run's LLM provider and rephrasings, is recorded in the
run's metadata, and an unknown one fails the run before any model is called."""

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from loopback.openai_faults import OpenAIFaultServer
from rag_assets.inference.sql.job import sql_job
from rag_assets.inference.sql.resource import WarehouseResource
from rag_assets.pipeline import Workspace
from rag_assets.variants import VariantSettings, register
from resources.llm import LLMResource
from sql_platform import loopback_policy, sql_responder

pytestmark = pytest.mark.slow


@pytest.fixture()
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE orders (id INTEGER, customer VARCHAR, amount DOUBLE)")
        con.execute("INSERT INTO orders VALUES (1, 'Ada', 10.5), (2, 'Ada', 4.5), (3, 'Linus', 7.0)")
    return path


@pytest.fixture()
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "variants.yaml"
    register([VariantSettings(name="sql-one", n_rephrasings=1, llm_provider="openai")], path)
    monkeypatch.setenv("RAG_VARIANTS", str(path))
    monkeypatch.setenv("RAG_HOME", str(tmp_path / "home"))
    return path


def run(question: str, variant: str, shop: Path, ws: Workspace, llm: LLMResource) -> dg.ExecuteInProcessResult:
    ws.root.mkdir(parents=True, exist_ok=True)
    resources = {**ws.resources(), "llm": llm, "inference_io": dg.mem_io_manager, "warehouse_db": WarehouseResource(path=str(shop))}
    config = {"question": question, "database": str(shop), "variant": variant}
    return sql_job.execute_in_process(run_config={"ops": {"reword": {"config": config}}}, resources=resources,
                                      instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_a_variant_pins_the_provider_and_rephrasings_and_is_recorded(tmp_path: Path, shop: Path, registry: Path, embedding_cache: Path):
    ws = Workspace(root=tmp_path / "ws", cache_dir=embedding_cache)
    with OpenAIFaultServer(responder=sql_responder(lambda q: "SELECT customer, sum(amount) FROM orders GROUP BY customer")) as server:
        # the policy routes to a loopback "loopback-sql" model; the variant pins the openai provider (its default model)
        llm = LLMResource(policy_path=str(loopback_policy(tmp_path / "policy.yaml", server.base_url)), base_url=server.base_url + "/v1",
                          openai_api_key="sk-test")
        result = run("What did each customer spend?", "sql-one", shop, ws, llm)
        models = {r.body["model"] for r in server.requests.snapshot()}
    assert result.success
    out = result.output_for_node("answer")
    assert sorted(out["rows"]) == [["Ada", 15.0], ["Linus", 7.0]] and out["variant"] == "sql-one"
    assert len(out["rewrites"]) == 1  # the variant's n_rephrasings (1), not the config's default (3)
    assert models == {"gpt-4.1-mini"} and out["llm"]["llm_models"] == {"openai/gpt-4.1-mini": 2}
    meta = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key == "answer").event_specific_data.metadata
    assert meta["variant"].value == "sql-one"
    assert meta["variant_settings"].data["n_rephrasings"] == 1 and meta["variant_settings"].data["llm_provider"] == "openai"


def test_the_default_variant_keeps_the_config_and_the_policy(tmp_path: Path, shop: Path, registry: Path, embedding_cache: Path):
    ws = Workspace(root=tmp_path / "ws", cache_dir=embedding_cache)
    with OpenAIFaultServer(responder=sql_responder(lambda q: "SELECT count(*) FROM orders")) as server:
        llm = LLMResource(policy_path=str(loopback_policy(tmp_path / "policy.yaml", server.base_url)), openai_api_key="sk-test")
        result = run("How many orders are there?", "default", shop, ws, llm)
    out = result.output_for_node("answer")
    assert result.success and out["rows"] == [[3]] and len(out["rewrites"]) == 3
    assert out["variant"] == "default" and out["llm"]["llm_models"] == {"openai/loopback-sql": 2}


def test_an_unknown_variant_fails_the_run_before_any_model_call(tmp_path: Path, shop: Path, registry: Path, embedding_cache: Path):
    ws = Workspace(root=tmp_path / "ws", cache_dir=embedding_cache)
    with OpenAIFaultServer(responder=sql_responder(lambda q: "SELECT 1")) as server:
        llm = LLMResource(policy_path=str(loopback_policy(tmp_path / "policy.yaml", server.base_url)), openai_api_key="sk-test")
        result = run("How many orders are there?", "no-such-variant", shop, ws, llm)
        assert len(server.requests) == 0
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert failure.step_key == "reword" and "'no-such-variant' is not registered" in message
    assert "\n" not in failure.event_specific_data.user_failure_data.description
