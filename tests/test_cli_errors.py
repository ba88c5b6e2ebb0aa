"""Errors a new user meets: each `rag` command answers each failure that applies to it with ONE line on
stderr (what is wrong and what to do), exit code 2 and no traceback, before any model loads.

Real subprocesses of the real command, real Milvus Lite (a server with nothing in it, a Lite file with
one source), closed loopback ports for stopped servers, real files for wrong paths.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag_assets import cli, client
from lite_server import milvus_lite_server
from rag_assets.devserver import free_port

REPO = Path(__file__).resolve().parents[1]
SOURCES = "sources:\n  - name: docs\n    kind: markdown\n    paths: [docs]\n  - name: notes\n    kind: files\n    paths: [notes]\n    sensitive: true\n    schedule: manual\n"
TYPO = "sources:\n  - name: docs\n    kind: markdown\n   paths: [docs]\n"  # one space short: a YAML syntax error
INVALID = "sources:\n  - name: docs\n    kind: markdwn\n"
LITE_INDEX = """
import sys
from pymilvus import MilvusClient
from rag_assets.index_store import ensure_collection
from rag_assets.storage import collection_name
from resources import EmbedderResource
embedder = EmbedderResource()
name, client = collection_name(embedder.model_id), MilvusClient(uri=sys.argv[1])
ensure_collection(client, name, embedder.dimension)
client.upsert(name, [{"chunk_id": "c1", "doc_id": "d1", "source": "docs", "title": "t", "link": "l", "heading_path": "",
                      "position": 0, "sensitive": False, "text": "hello world", "vector": [0.1] * embedder.dimension}])
client.flush(name)
client.close()
"""


def run_rag(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 120) -> subprocess.CompletedProcess:
    """`python -m rag_assets.cli ARGS` in its own process group (killed whole if it outlives `timeout_s`)."""
    proc = subprocess.Popen([sys.executable, "-m", "rag_assets.cli", *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"rag {' '.join(args)} still running after {timeout_s}s (a precondition was not checked): {err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, phrases: list[str]) -> str:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].strip(), proc.stderr[-3000:]
    assert lines[0].startswith(f"rag {command}: "), lines[0]
    for phrase in phrases:
        assert phrase.lower() in lines[0].lower(), (phrase, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def empty_milvus(tmp_path_factory: pytest.TempPathFactory):
    """A `milvus-lite server` with nothing ingested (a fresh `rag dev` before its first source)."""
    with milvus_lite_server(tmp_path_factory.mktemp("empty_milvus")) as uri:
        yield uri


@pytest.fixture(scope="module")
def busy_port():
    """A loopback port something listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, empty_milvus: str, busy_port: int) -> dict[str, str]:
    """The files and addresses the cases name: `{root}/...` paths, a closed port, servers."""
    root = tmp_path_factory.mktemp("cli_errors")
    for name, text in (("sources.yaml", SOURCES), ("typo.yaml", TYPO), ("invalid.yaml", INVALID), ("a_file", "not a folder\n")):
        (root / name).write_text(text)
    (root / "not_beir").mkdir()
    for name, split in (("beir_train_only", "train"), ("beir_bad_queries", "test")):
        (root / name / "qrels").mkdir(parents=True)
        (root / name / "corpus.jsonl").write_text('{"_id": "d1", "title": "", "text": "a document"}\n')
        (root / name / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (root / "beir_train_only" / "queries.jsonl").write_text('{"_id": "q1", "text": "a question"}\n')
    (root / "beir_bad_queries" / "queries.jsonl").write_text('{"_id": "q1", "text": "a question"\n')  # unclosed
    (root / "beir_bad_qrels").mkdir()
    for name in ("corpus.jsonl", "queries.jsonl"):
        (root / "beir_bad_qrels" / name).write_text((root / "beir_train_only" / name).read_text())
    (root / "beir_bad_qrels" / "qrels").mkdir()
    (root / "beir_bad_qrels" / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    (root / "home").mkdir()
    (root / "indexed_home").mkdir()
    subprocess.run([sys.executable, "-c", LITE_INDEX, str(root / "indexed_home" / "milvus.db")], check=True, cwd=REPO, timeout=300)
    return {"root": str(root), "closed": str(free_port()), "busy": str(busy_port), "empty_milvus": empty_milvus,
            "workspace": str(REPO / "workspace.yaml")}


def env_for(world: dict[str, str], **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAG_MILVUS_URI", "RAG_DEBUG", "RAG_WAREHOUSE", "DAGSTER_HOME")}
    env.update(RAG_HOME=f"{world['root']}/home", RAG_SOURCES=f"{world['root']}/sources.yaml", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=str(REPO))
    env.update({k: v.format(**world) for k, v in overrides.items()})
    return env


STOPPED_WEB = ["cannot reach the dagster webserver at http://127.0.0.1:", "start it with `rag dev`"]
STOPPED_MILVUS = ["cannot reach milvus at http://127.0.0.1:", "start it with `rag dev`"]
NO_INDEX = ["no index yet", "declare a source in sources.yaml"]
NOT_WRITABLE = ["cannot write to {root}/a_file"]
SOURCES_TYPO = ["yaml syntax error at line 4", "fix the file"]
SOURCES_INVALID = ["kind", "fix the file"]
NO_SOURCES = ["no sources file at {root}/missing.yaml", "rag_sources"]
DEV = ["--workspace", "{workspace}", "--home", "{root}/devhome", "--port", "{closed}", "--milvus-port", "{closed}"]

# (command, arguments, environment, phrases the line must hold: what is wrong and what to do)
CASES = {
    # rag eval
    "eval/missing-folder": ("eval", ["--dataset", "{root}/nope"], {}, ["no dataset folder at {root}/nope", "pass --dataset"]),
    "eval/not-beir": ("eval", ["--dataset", "{root}/not_beir"], {}, ["not a BEIR dataset (no corpus.jsonl or queries.jsonl)", "pass --dataset"]),
    "eval/unknown-split": ("eval", ["--dataset", "{root}/beir_train_only"], {}, ["no qrels for split 'test'", "splits here: train", "pass --split"]),
    "eval/malformed-queries": ("eval", ["--dataset", "{root}/beir_bad_queries"], {}, ["queries.jsonl:1: not a BEIR query", '"_id" and "text"']),
    "eval/malformed-qrels": ("eval", ["--dataset", "{root}/beir_bad_qrels"], {}, ["test.tsv:2: relevance 'high' is not an integer", "query-id<TAB>corpus-id<TAB>score"]),
    "eval/cache-dir-not-writable": ("eval", ["--dataset", "{root}/beir_bad_queries", "--cache-dir", "{root}/a_file"], {}, [*NOT_WRITABLE, "--cache-dir"]),
    # rag ask --local
    "ask-local/no-index-file": ("ask", ["--local", "q"], {}, [*NO_INDEX, "no Milvus Lite file at {root}/home/milvus.db"]),
    "ask-local/no-index-server": ("ask", ["--local", "q"], {"RAG_MILVUS_URI": "{empty_milvus}"}, [*NO_INDEX, "no collection 'chunks__"]),
    "ask-local/stopped-milvus": ("ask", ["--local", "q"], {"RAG_MILVUS_URI": "http://127.0.0.1:{closed}"}, STOPPED_MILVUS),
    "ask-local/unknown-source": ("ask", ["--local", "q", "--source", "docs", "--source", "nope"], {"RAG_HOME": "{root}/indexed_home"},
                                 ["unknown source 'nope'", "declared in {root}/sources.yaml: docs, notes", "rag sources list"]),
    "ask-local/home-not-writable": ("ask", ["--local", "q"], {"RAG_HOME": "{root}/a_file"}, [*NOT_WRITABLE, "set RAG_HOME"]),
    # rag ask (over the webserver)
    "ask/stopped-webserver": ("ask", ["q", "--url", "http://127.0.0.1:{closed}"], {}, STOPPED_WEB),
    "ask/stopped-webserver-with-source": ("ask", ["q", "--source", "docs", "--url", "http://127.0.0.1:{closed}"], {}, STOPPED_WEB),
    # rag sql (over the webserver)
    "sql/stopped-webserver": ("sql", ["q", "--url", "http://127.0.0.1:{closed}"], {}, STOPPED_WEB),
    "sql/missing-database": ("sql", ["q", "--database", "{root}/nope.duckdb"], {}, ["no DuckDB database at {root}/nope.duckdb", "check --database"]),
    # rag sql --local
    "sql-local/missing-database": ("sql", ["--local", "q", "--database", "nope.duckdb"], {}, ["no DuckDB database at {root}/nope.duckdb", "check --database"]),
    "sql-local/stopped-milvus": ("sql", ["--local", "q"], {"RAG_MILVUS_URI": "http://127.0.0.1:{closed}"}, STOPPED_MILVUS),
    "sql-local/no-sources-file": ("sql", ["--local", "q"], {"RAG_SOURCES": "{root}/missing.yaml"},
                                  ["no warehouse at {root}/home/warehouse.duckdb yet", "point RAG_SOURCES at your sources file"]),
    "sql-local/malformed-sources": ("sql", ["--local", "q"], {"RAG_SOURCES": "{root}/typo.yaml"}, SOURCES_TYPO),
    "sql-local/home-not-writable": ("sql", ["--local", "q"], {"RAG_HOME": "{root}/a_file"}, [*NOT_WRITABLE, "set RAG_HOME"]),
    # rag result
    "result/stopped-webserver": ("result", ["some-run-id", "--url", "http://127.0.0.1:{closed}"], {}, STOPPED_WEB),
    # rag sql-eval
    "sql-eval/missing-database": ("sql-eval", ["--database", "{root}/nope.duckdb"], {}, ["no warehouse at {root}/nope.duckdb", "check --database"]),
    # rag dev
    "dev/home-not-writable": ("dev", [*DEV, "--home", "{root}/a_file"], {}, [*NOT_WRITABLE, "--home"]),
    "dev/missing-sources": ("dev", [*DEV, "--sources", "{root}/missing.yaml"], {}, [*NO_SOURCES, "--sources"]),
    "dev/malformed-sources": ("dev", DEV, {"RAG_SOURCES": "{root}/typo.yaml"}, SOURCES_TYPO),
    "dev/invalid-sources": ("dev", [*DEV, "--sources", "{root}/invalid.yaml"], {}, SOURCES_INVALID),
    "dev/missing-workspace": ("dev", [*DEV, "--workspace", "{root}/nope.yaml"], {}, ["no workspace file at {root}/nope.yaml", "pass --workspace"]),
    "dev/port-taken": ("dev", [*DEV, "--port", "{busy}"], {}, ["port {busy} on 127.0.0.1 is taken", "pass --port"]),
    "dev/milvus-port-taken": ("dev", [*DEV, "--milvus-port", "{busy}"], {}, ["port {busy} on 127.0.0.1 is taken", "pass --milvus-port"]),
    "dev/llm-lookup-typo": ("dev", DEV, {"RAG_LLM_LOOKUP": "six"}, ["RAG_LLM_LOOKUP='six'", "whole number of draft tokens", "unset it"]),
    # rag sources
    "sources-list/missing-file": ("sources", ["list"], {"RAG_SOURCES": "{root}/missing.yaml"}, NO_SOURCES),
    "sources-list/missing-option-file": ("sources", ["list", "--sources", "{root}/missing.yaml"], {}, [*NO_SOURCES, "--sources"]),
    "sources-list/malformed": ("sources", ["list"], {"RAG_SOURCES": "{root}/typo.yaml"}, SOURCES_TYPO),
    "sources-list/invalid": ("sources", ["list", "--sources", "{root}/invalid.yaml"], {}, SOURCES_INVALID),
    "sources-remove/unknown-source": ("sources", ["remove", "nope"], {}, ["unknown source", "'nope' not declared", "rag sources list"]),
    "sources-remove/missing-file": ("sources", ["remove", "docs", "--sources", "{root}/missing.yaml"], {}, NO_SOURCES),
    "sources-remove/malformed": ("sources", ["remove", "docs"], {"RAG_SOURCES": "{root}/typo.yaml"}, SOURCES_TYPO),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_failure_is_one_line_saying_what_to_do(case: str, world: dict[str, str]):
    command, args, env, phrases = CASES[case]
    before = (Path(world["root"]) / "sources.yaml").read_text()
    started = time.monotonic()
    proc = run_rag([command, *(a.format(**world) for a in args)], env_for(world, **env), cwd=Path(world["root"]))
    assert_one_line_error(proc, command, [p.format(**world) for p in phrases])
    assert time.monotonic() - started < 60  # no model load, no long connect timeout
    assert (Path(world["root"]) / "sources.yaml").read_text() == before  # a failed command changes nothing


def test_sources_list_and_remove(tmp_path: Path):
    """`rag sources list` shows name, kind, sensitivity and schedule; `remove` drops the entries and confirms the removal."""
    sources = tmp_path / "sources.yaml"
    sources.write_text("# team sources\n" + SOURCES)
    env = {**os.environ, "RAG_SOURCES": str(sources)}
    listed = run_rag(["sources", "list"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows == [["name", "kind", "sensitive", "schedule"], ["docs", "markdown", "false", "nightly"], ["notes", "files", "true", "manual"]]

    removed = run_rag(["sources", "remove", "notes", "--sources", str(sources)], {**os.environ}, tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert "removed notes" in removed.stdout and "sensor" in removed.stdout
    from rag_assets.sources.spec import read_sources_file

    after = read_sources_file(sources)
    assert [s.name for s in after.sources] == ["docs"] and after.confirm_removal == ["notes"]
    assert sources.read_text().startswith("# team sources\n")  # the author's comments stay
    assert [line.split()[0] for line in run_rag(["sources", "list"], env, tmp_path).stdout.splitlines()] == ["name", "docs"]


def test_stopped_milvus_fails_fast(world: dict[str, str]):
    """A closed Milvus port is reported within seconds (a short connect timeout), not after a long hang."""
    started = time.monotonic()
    proc = run_rag(["ask", "--local", "q"], env_for(world, RAG_MILVUS_URI="http://127.0.0.1:{closed}"), cwd=Path(world["root"]))
    assert_one_line_error(proc, "ask", STOPPED_MILVUS)
    assert time.monotonic() - started < 30


def test_a_run_on_a_platform_without_an_index_says_so(empty_milvus: str):
    """What a `rag ask` run hits on the webserver when nothing is ingested: the retriever's own one-line error."""
    from rag_assets.retrieval import IndexMissing, Retriever
    from resources.milvus import milvus_client

    with pytest.raises(IndexMissing, match=r"no index yet: Milvus has no collection 'chunks__nothing'.*declare a source in sources.yaml"):
        Retriever(milvus_client(empty_milvus), "chunks__nothing", lambda texts: [])


def test_the_last_resort_boundary_names_the_exception_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """An error nobody anticipated: one line naming it and how to see the traceback; RAG_DEBUG=1 re-raises it."""
    def broken(run_id: str, **kwargs):
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr(client, "result", broken)
    monkeypatch.delenv("RAG_DEBUG", raising=False)
    assert cli.main(["result", "r1"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["rag result: unexpected RuntimeError: something unexpected; rerun with RAG_DEBUG=1 for the traceback"]
    monkeypatch.setenv("RAG_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something"):
        cli.main(["result", "r1"])


# --- against a real `dagster dev` (the session's stack, with the demo source ingested) -------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("args, phrases", [
    (["ask", "q", "--source", "nope"], ["unknown source 'nope'", "knows: rag-assets-docs", "rag sources list"]),
    (["result", "0123abcd-0000-0000-0000-000000000000"], ["no run 0123abcd-0000-0000-0000-000000000000", "check the run id"]),
], ids=["ask/unknown-source", "result/unknown-run"])
def test_webserver_answers_in_one_line(stack, tmp_path: Path, args: list[str], phrases: list[str]):
    proc = run_rag([*args, "--url", stack.url], {**os.environ, "RAG_SOURCES": str(stack.sources)}, tmp_path)
    assert_one_line_error(proc, args[0], phrases)
