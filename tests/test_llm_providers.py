"""The LLM resource with the real provider SDKs against loopback servers.

- `openai` SDK -> llama.cpp's own OpenAI-compatible server (`llama_cpp.server`) serving the bundled
  model: a real server this project did not write.
- `google-genai` SDK -> `loopback.gemini.GeminiServer`, a loopback server implementing the
  generateContent/embedContent request and response shapes of Google's REST reference (the real
  service cannot be reached from tests).
- Faults -> `loopback.openai_faults.OpenAIFaultServer`, a loopback OpenAI-shaped server that plays
  429 + Retry-After, 500, hangs past the timeout and malformed JSON.
- Constraints (`Constraint`): the request each SDK sends carries the grammar or JSON schema; llama.cpp's
  server and the bundled model keep to a grammar; a candidate that cannot enforce one is skipped.
"""

import json
from pathlib import Path

import pytest
import yaml

from llama_server import llama_server
from loopback.gemini import GeminiServer
from loopback.openai_faults import OpenAIFaultServer
from rag_assets.llm.types import AllCandidatesFailed, Constraint
from resources.llm import LLMResource

pytestmark = pytest.mark.slow
SECRET_KEY = "sk-test-never-log-me"


def write_policy(path: Path, candidates: list[dict], **retry) -> str:
    policy = {"tiers": {"strong": candidates, "fast": candidates},
              "retry": {"max_attempts": 3, "backoff_s": 0.05, "max_backoff_s": 2, "timeout_s": 0.5, **retry},
              "budget": {"max_tokens": 100000}}
    path.write_text(yaml.safe_dump(policy))
    return str(path)


def test_openai_sdk_against_llama_cpp_server_serving_the_bundled_model(tmp_path: Path):
    with llama_server(alias="gemma-local", log=tmp_path / "llama.log") as base_url:
        llm = LLMResource(provider="openai", model="gemma-local", base_url=base_url, external=False, openai_api="completions",
                          openai_api_key=SECRET_KEY, timeout_s=120)
        out = llm.complete("Question: What is the capital of France?\nAnswer:", max_tokens=8, stop=["\n"])
        assert "Paris" in out.text
        assert out.provider == "openai" and out.tokens_in > 5 and out.tokens_out >= 1
        chat = LLMResource(provider="openai", model="gemma-local", base_url=base_url, external=False, timeout_s=120)
        reply = chat.complete("Say hello.", max_tokens=8)  # chat turns: a base model may say little, but the call works
        assert isinstance(reply.text, str) and reply.tokens_in > 0
        # the completions API hands a GBNF grammar to llama.cpp's server, which keeps to it
        grammar = 'root ::= " " ("Lyon" | "Nice" | "Lille") "."'
        constrained = LLMResource(provider="openai", model="gemma-local", base_url=base_url, external=False, openai_api="completions",
                                  openai_api_key=SECRET_KEY, timeout_s=120)
        towns = constrained.complete("Question: What is the capital of France?\nAnswer:", max_tokens=8, constraint=Constraint(grammar=grammar))
        assert towns.text in (" Lyon.", " Nice.", " Lille.") and towns.constrained_by == "grammar"
    meta = llm.metadata()
    assert meta["llm_calls"] == 1 and meta["llm_tokens_in"] == out.tokens_in
    assert meta["llm_models"] == {"openai/gemma-local": 1}
    assert SECRET_KEY not in repr(meta)


def test_gemini_sdk_against_the_loopback_gemini_server():
    with GeminiServer(api_key=SECRET_KEY) as server:
        llm = LLMResource(provider="gemini", model="gemini-2.5-flash", base_url=server.base_url, gemini_api_key=SECRET_KEY)
        out = llm.complete("Summarise: assets, not scripts.", system="Be brief.", max_tokens=64)
        assert "assets, not scripts" in out.text
        assert out.tokens_in > 0 and out.tokens_out > 0
        sent = server.requests.snapshot()[-1]
        assert sent.path.endswith("/models/gemini-2.5-flash:generateContent")
        assert sent.headers["x-goog-api-key"] == SECRET_KEY
        assert sent.body["generationConfig"]["maxOutputTokens"] == 64
    assert SECRET_KEY not in repr(llm.metadata())


def test_faults_are_retried_then_fall_back_and_metadata_says_what_happened(tmp_path: Path):
    with OpenAIFaultServer() as flaky, OpenAIFaultServer() as backup:
        flaky.push(("status", 429, {"Retry-After": "1"}), ("status", 500), ("hang", 3))
        policy = write_policy(tmp_path / "p.yaml", [
            {"name": "flaky", "provider": "openai", "model": "m1", "base_url": flaky.base_url + "/v1", "external": True},
            {"name": "backup", "provider": "openai", "model": "m2", "base_url": backup.base_url + "/v1", "external": True},
        ])
        llm = LLMResource(policy_path=policy)
        out = llm.complete("hello there")
        assert out.model == "m2"
    meta = llm.metadata()
    outcomes = [(r["candidate"], r["outcome"]) for r in llm.ledger.rows()]
    assert outcomes == [("flaky", "rate_limited"), ("flaky", "server_error"), ("flaky", "timeout"), ("backup", "ok")]
    assert meta["llm_calls"] == 1 and meta["llm_failed_attempts"] == 3
    assert any("fallback after flaky timeout" in str(record.data) for record in meta["llm_calls_detail"].records)
    assert 0.45 < llm.ledger.rows()[2]["latency_s"] < 2.5  # the hang was cut by the 0.5 s timeout


def test_malformed_json_and_bad_shape_are_retried(tmp_path: Path):
    with OpenAIFaultServer() as server:
        server.push(("malformed",), ("bad_shape",))
        policy = write_policy(tmp_path / "p.yaml", [{"name": "only", "provider": "openai", "model": "m", "base_url": server.base_url + "/v1"}])
        llm = LLMResource(policy_path=policy)
        assert llm.complete("hi").text
        assert [r["outcome"] for r in llm.ledger.rows()] == ["malformed", "malformed", "ok"]
        server.push(("status", 500), ("status", 500), ("status", 500))
        with pytest.raises(AllCandidatesFailed, match="only server_error"):
            llm.complete("again")


def test_run_config_switches_provider_with_no_code_change():
    with GeminiServer() as gemini, OpenAIFaultServer() as oai:
        a = LLMResource(provider="gemini", base_url=gemini.base_url, gemini_api_key="k")
        b = LLMResource(provider="openai", model="gpt-x", base_url=oai.base_url + "/v1", openai_api_key="k")
        assert a.complete("q").provider == "gemini" and len(gemini.requests) == 1
        assert b.complete("q").provider == "openai" and oai.requests[0].body["model"] == "gpt-x"


SCHEMA = {"type": "object", "properties": {"sql": {"type": "string"}}, "required": ["sql"], "additionalProperties": False}


def test_openai_structured_outputs_send_the_json_schema():
    with OpenAIFaultServer(responder=lambda prompt: '{"sql": "SELECT 1"}') as server:
        llm = LLMResource(provider="openai", model="gpt-x", base_url=server.base_url + "/v1", openai_api_key="k")
        out = llm.complete("Write SQL.", max_tokens=32, constraint=Constraint(json_schema=SCHEMA, name="sql_query"))
        body = server.requests.snapshot()[-1].body
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "sql_query", "schema": SCHEMA, "strict": True}}
    assert out.constrained_by == "json_schema" and json.loads(out.text) == {"sql": "SELECT 1"}


def test_gemini_response_schema_is_sent():
    with GeminiServer(responder=lambda prompt: '{"sql": "SELECT 2"}') as server:
        llm = LLMResource(provider="gemini", base_url=server.base_url, gemini_api_key="k")
        out = llm.complete("Write SQL.", max_tokens=32, constraint=Constraint(json_schema=SCHEMA))
        config = server.requests.snapshot()[-1].body["generationConfig"]
    assert config["responseMimeType"] == "application/json" and config["responseJsonSchema"] == SCHEMA
    assert out.constrained_by == "json_schema" and json.loads(out.text)["sql"] == "SELECT 2"


def test_a_candidate_that_cannot_enforce_the_constraint_is_skipped_without_a_request(tmp_path: Path):
    grammar_only = Constraint(grammar='root ::= "SELECT 1"')
    with OpenAIFaultServer() as chat, OpenAIFaultServer(responder=lambda prompt: "SELECT 1") as completions:
        policy = write_policy(tmp_path / "p.yaml", [
            {"name": "chat", "provider": "openai", "model": "m1", "base_url": chat.base_url + "/v1"},
            {"name": "base", "provider": "openai", "model": "m2", "base_url": completions.base_url + "/v1", "api": "completions"},
        ])
        llm = LLMResource(policy_path=policy)
        out = llm.complete("Write SQL.", constraint=grammar_only)
        assert len(chat.requests) == 0 and completions.requests[0].body["grammar"] == grammar_only.grammar
    assert out.model == "m2" and out.constrained_by == "grammar"
    assert [(r["candidate"], r["outcome"]) for r in llm.ledger.rows()] == [("chat", "rejected"), ("base", "ok")]
    with GeminiServer() as gemini:  # pinned, Gemini cannot take a grammar: the policy's local model answers instead
        pinned = LLMResource(provider="gemini", base_url=gemini.base_url, gemini_api_key="k")
        local = pinned.complete("Write SQL.", constraint=grammar_only)
        assert len(gemini.requests) == 0
    assert local.provider == "local" and local.text == "SELECT 1" and local.constrained_by == "grammar"
    assert pinned.ledger.rows()[0]["outcome"] == "rejected" and pinned.ledger.rows()[0]["candidate"].startswith("run-config:gemini/")


def test_the_bundled_model_keeps_to_a_grammar():
    llm = LLMResource(provider="local")
    out = llm.complete("Question: What is the capital of France?\nAnswer:", max_tokens=8,
                       constraint=Constraint(grammar='root ::= " " ("Lyon" | "Nice" | "Lille") "."'))
    assert out.text in (" Lyon.", " Nice.", " Lille.") and out.constrained_by == "grammar"
    shaped = llm.complete("A JSON object with a name:", max_tokens=24, constraint=Constraint(json_schema=SCHEMA))
    assert set(json.loads(shaped.text)) == {"sql"} and shaped.constrained_by == "json_schema"
