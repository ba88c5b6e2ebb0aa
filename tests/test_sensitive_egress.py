"""With an external provider preferred, no request ever carries a sensitive source's text.

The platform is configured as a user would prefer a cloud model: the repository's `llm_policy.yaml`,
`OPENAI_API_KEY` set and `OPENAI_BASE_URL` pointing at `RecordingOpenAIServer`, a loopback
OpenAI-compatible server that records every request (chat and embeddings). Two real sources are
ingested (Milvus Lite, local embedder): `vault` (sensitive, holding a unique marker) and `handbook`.
Then every user path runs for real: ingestion, `ask_job` (public, sensitive, restricted to the
sensitive source, pinned to the external provider, with verification), `sql_job` over a warehouse
holding both sources (queries that read the sensitive rows), `rag sql-eval`, `rag eval`, an external
embedder, and provider failures with fallback. Each path asserts that the recorder DID receive its
non-sensitive requests (so the check can fail) and that no request carries the sensitive text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import yaml

from loopback.recording import REWRITE, SQL_PRIMER, VERIFY, RecordingOpenAIServer, carrying
from rag_assets import client
from rag_assets.cli import main
from rag_assets.inference.sql.assets import schema_index, warehouse
from rag_assets.inference.sql.resource import WarehouseResource
from rag_assets.llm.types import AllCandidatesFailed, SensitiveDataError
from rag_assets.pipeline import QUIET_LOGS, Workspace
from resources import EmbedderResource
from resources.llm import LLMResource

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
MARKER = "QUOKKA-7731-ZEPHYR"
VAULT_TITLE = "Vault Access Procedure"
VAULT_DOC = (f"# {VAULT_TITLE}\n\nThe vault door code is {MARKER}. Only the night guard opens the vault, "
             "and only after midnight on weekdays.\n")
SENSITIVE = (MARKER, VAULT_TITLE, "night guard opens the vault")  # any of these in a request is a leak
HANDBOOK = {
    "hours.md": "# Office Hours Policy\n\nThe office opens at nine in the morning and closes at six in the evening.\n",
    "deploy.md": "# Deployment Runbook\n\nDeploy the platform with `make deploy` after the tests pass on main.\n",
    "holidays.md": "# Holiday Calendar\n\nThe office is closed on public holidays and between Christmas and New Year.\n",
}
PUBLIC_TITLES = ("Office Hours Policy", "Deployment Runbook", "Holiday Calendar")
LOCAL_MODEL = "local/gemma-3-270m-q4_k_m"
SQL_FOR = {  # what the "external model" writes: queries that pull the sensitive rows into the result
    "Show the text of the chunks of source vault.": "SELECT source, text FROM chunks WHERE source = 'vault'",
    "Show the title and text of every document.": "SELECT source, title, text FROM documents",
    "How many chunks does each source have?": "SELECT source, count(*) FROM chunks GROUP BY source",
}
NOTES_QUESTION = "Show every note and memo."
NOTES_SQL = "SELECT n.source, n.body, m.body FROM notes n JOIN memos m USING (source)"
ASK = dict(top_k=3, n_rephrasings=2, max_tokens=32)


@dataclass
class World:
    workspace: Workspace
    home: Path
    warehouse: Path
    server: RecordingOpenAIServer
    ingest_requests: int
    counts: dict[str, int] = field(default_factory=dict)  # requests the external provider received, by path

    def record(self, path: str, requests: list) -> None:
        self.counts[path] = len(requests)

    def sources(self) -> list[dict]:
        data = self.workspace.root.parent / "data"
        return [{"name": "handbook", "kind": "markdown", "paths": [str(data / "handbook")]},
                {"name": "vault", "kind": "markdown", "paths": [str(data / "vault")], "sensitive": True}]


def write_data(root: Path) -> None:
    (root / "handbook").mkdir(parents=True)
    (root / "vault").mkdir(parents=True)
    for name, text in HANDBOOK.items():
        (root / "handbook" / name).write_text(text)
    (root / "vault" / "access.md").write_text(VAULT_DOC)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedding_cache: Path):
    root = tmp_path_factory.mktemp("egress")
    write_data(root / "data")
    ws = Workspace(root=root / "ws", cache_dir=embedding_cache)
    home = root / "home"
    home.mkdir()
    with RecordingOpenAIServer(sql_for={**SQL_FOR, NOTES_QUESTION: NOTES_SQL}) as server, pytest.MonkeyPatch.context() as mp:
        world = World(ws, home, home / "warehouse.duckdb", server, 0)
        ws.write_sources(world.sources())
        for name, value in {"RAG_HOME": str(home), "RAG_MILVUS_URI": str(ws.root / "milvus.db"), "RAG_SOURCES": str(ws.sources_file),
                            "RAG_ASSETS_DIR": str(ws.root / "assets"), "RAG_WAREHOUSE": str(world.warehouse),
                            "RAG_LLM_POLICY": str(REPO / "llm_policy.yaml"),  # the repository's policy: OpenAI first
                            "OPENAI_API_KEY": "sk-loopback", "OPENAI_BASE_URL": server.base_url + "/v1"}.items():
            mp.setenv(name, value)
        for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
            mp.delenv(name, raising=False)
        ws.materialize("handbook")
        ws.materialize("vault")
        resources = {**ws.resources(), "warehouse_db": WarehouseResource(path=str(world.warehouse))}
        assert dg.materialize([warehouse, schema_index], resources=resources, instance=ws.instance, run_config=QUIET_LOGS).success
        world.ingest_requests = server.mark()
        world.counts["ingestion of both sources, warehouse, schema_index"] = world.ingest_requests
        yield world


def models(result: dict) -> set[str]:
    return set(result["llm"]["llm_models"])


def test_ingestion_and_the_warehouse_call_no_model(world: World):
    assert world.ingest_requests == 0  # ingestion, `warehouse` and `schema_index` make no LLM call with a local embedder
    assert world.warehouse.is_file()


def cli_json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    """`rag ARGV --local --json` in this process; its JSON output."""
    capsys.readouterr()
    assert main([*argv, "--local", "--json"]) in (0, 1), argv  # 1: `rag sql` whose query was refused or failed
    return json.loads(capsys.readouterr().out)


def test_ask_sends_public_questions_out_and_keeps_sensitive_ones_local(world: World, capsys: pytest.CaptureFixture):
    server = world.server
    mark = server.mark()
    public = client.ask_local("When does the office open?", sources=["handbook"], verify=True, **ASK)
    sent = server.since(mark)
    world.record("ask, public (restricted to handbook, verified)", sent)
    assert models(public) == {"openai/gpt-4.1-mini", "openai/gpt-4.1"}  # the preferred external provider answered
    prompts = [r.raw.decode() for r in sent]
    assert len(sent) == public["llm"]["llm_calls"] >= 3 and set(server.endpoints(sent)) == {"chat"}
    assert any(REWRITE in p for p in prompts) and any(VERIFY in p for p in prompts) and any("numbered sources" in p for p in prompts)
    assert carrying(sent, "nine in the morning")  # public text does go out: the recorder sees what a leak would look like

    asks = [  # (question, how it is asked, whether the sensitive document must be among the answer's sources)
        ("What is the code of the vault door?", lambda q: client.ask_local(q, verify=True, **ASK), False),  # the local verifier may drop it
        ("What does this source say?", lambda q: client.ask_local(q, sources=["vault"], **ASK), True),  # restricted to the sensitive source
        ("Who opens the vault, and when?",  # `rag ask --provider openai`: the external provider pinned on the command line
         lambda q: cli_json(capsys, "ask", q, "--provider", "openai", "--rephrasings", "2", "--top-k", "3", "--max-tokens", "32"), True),
        ("How do I deploy the platform?", lambda q: client.ask_local(q, **ASK), False),  # public; its candidates hold the sensitive chunk
    ]
    for question, ask, cites_vault in asks:
        mark = server.mark()
        result = ask(question)
        world.record(f"ask, kept local: {question}", server.since(mark))
        assert models(result) == {LOCAL_MODEL} and result["llm"]["llm_calls"] >= 2, (question, result["llm"])
        assert server.since(mark) == [], question  # rewrite, verify and answer all stayed local
        assert not cites_vault or any(s["title"] == VAULT_TITLE for s in result["sources"]), question
    assert not server.carrying(*SENSITIVE)


def test_sql_never_puts_sensitive_rows_or_samples_in_a_prompt(world: World, capsys: pytest.CaptureFixture):
    server = world.server
    mark = server.mark()
    results = {q: client.sql_local(q, n_rephrasings=2, max_tables=3) for q in SQL_FOR}
    sent = server.since(mark)
    world.record(f"sql over the warehouse ({len(SQL_FOR)} questions reading sensitive rows)", sent)
    assert all(not r["error"] for r in results.values()), {q: r["error"] for q, r in results.items()}
    assert all(models(r) == {"openai/gpt-4.1-mini", "openai/gpt-4.1"} for r in results.values())
    assert server.endpoints(sent) == {"chat": 2 * len(SQL_FOR)}  # reword and generate_sql per question
    sql_prompts = [r for r in sent if SQL_PRIMER in r.raw.decode()]
    assert len(sql_prompts) == len(SQL_FOR)
    assert carrying(sql_prompts, *PUBLIC_TITLES)  # public rows' values reach the prompt as samples...
    assert not carrying(sent, *SENSITIVE)  # ...the sensitive source's never do
    vault_rows = results["Show the text of the chunks of source vault."]["rows"]
    assert vault_rows and {row[0] for row in vault_rows} == {"vault"}  # the query did read the sensitive rows, locally
    by_source = dict(map(tuple, results["How many chunks does each source have?"]["rows"]))
    assert set(by_source) == {"handbook", "vault"}

    mark = server.mark()
    kept = cli_json(capsys, "sql", "Show the text of the chunks of source vault.", "--sensitive", "--rephrasings", "1", "--max-tokens", "48")
    world.record("rag sql --sensitive", server.since(mark))
    assert models(kept) == {LOCAL_MODEL} and server.since(mark) == []  # `rag sql --sensitive`: nothing leaves


def test_sql_prompts_of_any_database_carry_samples_of_public_rows_only(world: World, tmp_path: Path):
    """`rag sql --database`: rows flagged sensitive, flagged NULL (unknown), or of a source its `sources` table
    marks sensitive (even with a stale `false` flag, or in a table with no flag at all) give no sample values."""
    import duckdb

    db = tmp_path / "notes.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE sources (name VARCHAR, sensitive BOOLEAN)")
        con.execute("INSERT INTO sources VALUES ('canteen', false), ('vault', true)")
        con.execute("CREATE TABLE notes (source VARCHAR, sensitive BOOLEAN, body VARCHAR)")
        con.execute("INSERT INTO notes VALUES ('canteen', false, 'Lunch is served at noon in the canteen.'), "
                    f"('vault', true, 'flagged: {MARKER}'), ('vault', false, 'stale flag: {MARKER}'), ('canteen', NULL, 'unknown: {MARKER}')")
        con.execute("CREATE TABLE memos (source VARCHAR, body VARCHAR)")
        con.execute(f"INSERT INTO memos VALUES ('vault', 'memo: {MARKER}'), ('canteen', 'Soup of the day is leek and potato.')")
    server = world.server
    mark = server.mark()
    result = client.sql_local(NOTES_QUESTION, database=str(db), n_rephrasings=1, max_tables=3)
    sent = server.since(mark)
    world.record("sql --database (flags true, NULL, stale; no flag)", sent)
    assert not result["error"] and any(MARKER in str(row) for row in result["rows"])  # the query itself reads them, locally
    assert len(sent) == 2 and carrying(sent, "Lunch is served at noon") and carrying(sent, "Soup of the day")
    assert not carrying(sent, *SENSITIVE)


def test_sql_eval_and_rag_eval_send_no_sensitive_text(world: World, tmp_path: Path, capsys: pytest.CaptureFixture):
    server = world.server
    mark = server.mark()
    assert main(["sql-eval", "--json", "--rephrasings", "1", "--limit", "10", "--database", str(world.warehouse)]) == 0
    report = json.loads(capsys.readouterr().out)
    sent = server.since(mark)
    world.record("rag sql-eval (10 gold questions)", sent)
    assert report["questions"] == 10 and all(m.startswith("openai/") for m in report["models"])
    assert server.endpoints(sent) == {"chat": 20}
    assert carrying(sent, *PUBLIC_TITLES) and not carrying(sent, *SENSITIVE)

    dataset = tmp_path / "beir"
    (dataset / "qrels").mkdir(parents=True)
    (dataset / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": t, "text": t}) + "\n"
                                                  for i, t in enumerate(HANDBOOK.values())))
    (dataset / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "when does the office open"}) + "\n")
    (dataset / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\n")
    mark = server.mark()
    assert main(["eval", "--dataset", str(dataset), "--mode", "bm25", "--json"]) == 0
    capsys.readouterr()
    world.record("rag eval", server.since(mark))
    assert server.since(mark) == []  # `rag eval` scores retrieval only: it calls no model


def test_an_external_embedder_never_receives_sensitive_text(world: World, tmp_path: Path):
    server = world.server
    embedder = EmbedderResource(provider="openai", model="text-embedding-3-small", base_url=server.base_url + "/v1",
                                api_key="sk-loopback", dimension_override=8, cache_dir=str(tmp_path / "cache"))
    ws = Workspace(root=tmp_path / "ws")
    ws.write_sources(world.sources())
    mark = server.mark()
    ws.materialize("handbook", embedder=embedder)
    with pytest.raises(SensitiveDataError, match="cannot be embedded by the external provider"):
        ws.materialize("vault", embedder=embedder)
    world.record("external embedder: ingest handbook, refuse vault", server.since(mark))
    # the schema index of the warehouse (which holds the sensitive rows) embedded by the external embedder
    resources = {**ws.resources(embedder), "warehouse_db": WarehouseResource(path=str(world.warehouse))}
    assert dg.materialize([schema_index], resources=resources, instance=ws.instance, run_config=QUIET_LOGS).success
    sent = server.since(mark)
    world.record("external embedder: ingestion + schema_index", sent)
    assert set(server.endpoints(sent)) == {"embeddings"} and len(sent) >= 2
    assert carrying(sent, "nine in the morning") and carrying(sent, *PUBLIC_TITLES)
    assert not carrying(sent, *SENSITIVE)


def test_a_source_marked_sensitive_after_ingestion_gives_the_sql_prompt_nothing(world: World):
    """Before any re-ingestion or warehouse rebuild, `sources.yaml` as it is now decides; an unreadable one withholds every source."""
    server, question = world.server, "Show the title and text of every document."
    flipped = [{**s, "sensitive": True} for s in world.sources()]
    try:
        for label, write in (("marked sensitive", lambda: world.workspace.write_sources(flipped)),
                             ("unreadable", lambda: world.workspace.sources_file.write_text("sources: [\n  - {name: hand"))):
            write()
            mark = server.mark()
            result = client.sql_local(question, n_rephrasings=1)
            sent = server.since(mark)
            world.record(f"sql, sources.yaml {label}", sent)
            assert not result["error"] and len(sent) == 2, label  # still the external provider: the prompt holds no row values
            assert not carrying(sent, *PUBLIC_TITLES, "nine in the morning", *SENSITIVE), label
    finally:
        world.workspace.write_sources(world.sources())


def test_ask_keeps_a_source_marked_sensitive_after_ingestion_local(world: World):
    server = world.server
    world.workspace.write_sources([{**s, "sensitive": True} for s in world.sources()])
    try:
        mark = server.mark()
        client.ask_local("When does the office open?", sources=["handbook"], **ASK)
        assert server.since(mark) == []
    finally:
        world.workspace.write_sources(world.sources())


def policy_file(path: Path, first: RecordingOpenAIServer, second: RecordingOpenAIServer, in_house: RecordingOpenAIServer) -> Path:
    """Two external providers, then an in-house OpenAI-compatible endpoint (`external: false`), for both tiers."""
    cands = [{"name": "cloud-a", "provider": "openai", "model": "a", "base_url": first.base_url + "/v1", "api_key_env": "OPENAI_API_KEY"},
             {"name": "cloud-b", "provider": "openai", "model": "b", "base_url": second.base_url + "/v1", "api_key_env": "OPENAI_API_KEY"},
             {"name": "in-house", "provider": "openai", "model": "h", "base_url": in_house.base_url + "/v1", "external": False}]
    path.write_text(yaml.safe_dump({"tiers": {"fast": cands, "strong": cands},
                                    "retry": {"max_attempts": 2, "backoff_s": 0.01, "max_backoff_s": 0.01, "timeout_s": 30}}))
    return path


def test_fallback_never_moves_a_sensitive_call_to_another_external_provider(world: World, tmp_path: Path):
    down = [("status", 500)] * 100
    with RecordingOpenAIServer(down) as first, RecordingOpenAIServer() as second, \
            RecordingOpenAIServer(["ok", ("status", 500), ("status", 500)]) as in_house:
        llm_config = {"policy_path": str(policy_file(tmp_path / "policy.yaml", first, second, in_house))}
        public = client.ask_local("When does the office open?", sources=["handbook"], llm_config=llm_config, **ASK)
        assert models(public) == {"openai/b"} and len(first.requests) == 4 and len(second.requests) == 2  # 2 tries each call, then b
        assert len(in_house.requests) == 0

        first_seen, second_seen = len(first.requests), len(second.requests)
        # the in-house rewrite works, then its answer fails twice: the run fails rather than fall back to an external candidate
        with pytest.raises(AllCandidatesFailed, match="tier 'strong' failed: in-house server_error; in-house server_error$"):
            client.ask_local("What is the code of the vault door?", llm_config=llm_config, **ASK)
        assert len(first.requests) == first_seen and len(second.requests) == second_seen
        assert len(in_house.requests) == 3 and len(in_house.carrying(MARKER)) == 2  # the answer prompt held the marker: in-house only
        assert not first.carrying(*SENSITIVE) and not second.carrying(*SENSITIVE)
        world.counts.update({"fallback: cloud-a (down)": len(first.requests), "fallback: cloud-b": len(second.requests),
                             "fallback: in-house (not external; holds the marker)": len(in_house.requests)})


def test_an_in_house_candidate_must_name_its_endpoint(tmp_path: Path):
    from rag_assets.llm.policy import load_policy

    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"tiers": {"strong": [{"name": "office-gpu", "provider": "openai", "model": "m", "external": False}]}}))
    with pytest.raises(ValueError, match="external: false needs the in-house base_url"):
        load_policy(policy)  # without a base_url the SDK would send "in-house" data to the vendor (or $OPENAI_BASE_URL)
    with pytest.raises(ValueError, match="external: false needs the in-house base_url"):
        LLMResource(provider="openai", external=False, openai_api_key="sk-loopback").router  # the same when pinned by run config


def test_no_request_ever_carried_sensitive_text(world: World):
    received = world.server.requests.snapshot()
    if not received:
        pytest.skip("sums up the other tests of this file: run it with them")
    print(f"\nexternal provider received {len(received)} requests: {dict(world.server.endpoints())}")
    for path, n in world.counts.items():
        print(f"  {n:3d}  {path}")
    assert not carrying(received, *SENSITIVE)
