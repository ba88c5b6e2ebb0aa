"""The `rag` command.

A failure the user can fix ends in one line on stderr, `rag <command>: <what is wrong>: <what to do>`,
and exit code 2; cheap preconditions are checked before any model loads. Anything else is caught by
`main`'s last-resort boundary (one line too; `RAG_DEBUG=1` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from rag_assets.client import DEFAULT_URL, ClientError
from rag_assets.experiments.cli import add_parser as add_experiment_parser
from rag_assets.inference.sql.plan import PLANS

EXIT_USER_ERROR = 2


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def _eval(args: argparse.Namespace) -> int:
    from rag_assets.client import check_writable
    from rag_assets.eval.beir import check_beir

    check_beir(Path(args.dataset).resolve(), args.split)
    if args.cache_dir:
        check_writable(Path(args.cache_dir).resolve(), "pass a writable folder with --cache-dir")
    from rag_assets.eval.run import run_eval

    modes = ["dense", "bm25", "hybrid"] if args.mode == "all" else [args.mode]
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    result = run_eval(
        Path(args.dataset), modes, split=args.split, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        max_queries=args.max_queries, max_docs=args.max_docs, fusion=args.fusion, dense_weight=args.dense_weight, log=log,
    )
    if args.json:
        out = dict(result.scores[modes[0]]) if len(modes) == 1 else {}
        out.update({"mode": args.mode, "split": args.split, "queries": result.queries, "documents": result.documents,
                    "chunks": result.chunks, "fusion": args.fusion, "dense_weight": round(result.dense_weight if args.fusion == "auto" else args.dense_weight, 3),
                    "timings": result.timings})
        if len(modes) > 1:
            out["scores"] = result.scores
        print(json.dumps(out))
        return 0
    print(f"{result.dataset} ({args.split}): {result.queries} queries, {result.documents} documents, {result.chunks} chunks")
    print(f"{'mode':8} {'nDCG@10':>8} {'R@100':>8} {'MRR@10':>8}")
    for mode, s in result.scores.items():
        print(f"{mode:8} {s['ndcg_at_10']:8.4f} {s['recall_at_100']:8.4f} {s['mrr_at_10']:8.4f}")
    print("timings: " + ", ".join(f"{k}={v}" for k, v in result.timings.items()))
    return 0


def _check_port_free(port: int, option: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: only a live listener blocks the port
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ClientError(f"port {port} on 127.0.0.1 is taken ({exc.strerror}): stop what holds it (another `rag dev`?), "
                              f"or pass {option} with a free port") from exc


def _check_postgres(url: str) -> None:
    """The Dagster storage database answers (a psycopg2 URL; `postgresql+psycopg2://` is read as `postgresql://`)."""
    import psycopg2

    libpq_url = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    try:
        psycopg2.connect(libpq_url, connect_timeout=5).close()
    except psycopg2.Error as exc:
        where = urlparse(libpq_url)
        reason = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
        raise ClientError(f"cannot connect to PostgreSQL at {where.hostname}:{where.port or 5432}{where.path} ({reason}): "
                          "start it, or fix --postgres-url / $RAG_DAGSTER_POSTGRES_URL") from exc


def _dev(args: argparse.Namespace) -> int:
    from rag_assets.client import check_writable, read_sources
    from rag_assets.sources.spec import sources_file_path

    sources = Path(args.sources).resolve() if args.sources else sources_file_path()
    home, workspace = Path(args.home).resolve(), Path(args.workspace).resolve()
    check_writable(home, "pass a writable folder with --home")
    read_sources(sources)
    if not workspace.is_file():
        raise ClientError(f"no workspace file at {workspace}: run `rag dev` in the project folder, or pass --workspace")
    if not args.no_model_servers:
        from rag_assets.llm.lookup_decoding import draft_tokens

        try:
            draft_tokens()  # read when the LLM server starts: a typo is reported before anything starts
        except ValueError as exc:
            raise ClientError(f"{exc}; fix it or unset it") from exc
    _check_port_free(args.port, "--port")
    _check_port_free(args.milvus_port, "--milvus-port")
    if args.postgres_url:
        _check_postgres(args.postgres_url)
    from rag_assets.devserver import run_dev

    return run_dev(home, args.port, args.milvus_port, sources, workspace, postgres_url=args.postgres_url or None,
                   model_servers=not args.no_model_servers)


def _print_answer(result: dict, as_json: bool, streamed: bool = False) -> None:
    """The answer (unless `streamed`: already printed as it came), its sources, and the run's timings on stderr."""
    if as_json:
        keep = ("question", "answer", "rephrasings", "run_id", "timings", "llm")
        out = {k: result.get(k) for k in keep}
        out["sources"] = [{"link": s["link"], "title": s["title"], "score": s["score"], "snippet": s["snippet"]} for s in result["sources"]]
        print(json.dumps(out))
        return
    if not streamed:
        print(result["answer"].strip() or "(empty answer)")
    print()
    for i, s in enumerate(result["sources"], 1):
        print(f"[{i}] {s['title']} - {s['link']} (score {s['score']:.4f})")
    print(f"\nrun {result.get('run_id', '')}: " + ", ".join(f"{k}={v}" for k, v in result.get("timings", {}).items()), file=sys.stderr)


def _llm_config(args: argparse.Namespace) -> dict | None:
    return {"base_url": args.base_url} if args.base_url else None


def _inference(command: str, args: argparse.Namespace, options: dict, on_answer=None) -> dict:
    """Run `ask` or `sql` over GraphQL (or in-process with --local); a `ClientError` says what went wrong."""
    from rag_assets import client

    run_local, run_remote = (client.ask_local, client.ask) if command == "ask" else (client.sql_local, client.sql)
    llm = dict(provider=args.provider, model=args.model, llm_config=_llm_config(args))
    if args.local:
        return run_local(args.question, **llm, **options)
    progress = None if args.quiet else client.stderr_progress
    extra = {"on_answer": on_answer} if on_answer else {}
    return run_remote(args.question, url=args.url, timeout_s=args.timeout, on_progress=progress, **llm, **options, **extra)


class _TerminalAnswer:
    """Prints an answer's pieces to stdout as they arrive over GraphQL; a restart (the model call was retried) starts a new line."""

    def __init__(self) -> None:
        self.printed = False

    def __call__(self, text: str, restart: bool) -> None:
        if restart:
            if self.printed:
                print("\n(the model call was retried; the answer starts again)", file=sys.stderr, flush=True)
            return
        print(text.lstrip() if not self.printed else text, end="", flush=True)
        self.printed = self.printed or bool(text.strip())


def _ask(args: argparse.Namespace) -> int:
    options = dict(top_k=args.top_k, n_rephrasings=args.rephrasings, mode=args.mode, sources=args.source or None, max_tokens=args.max_tokens)
    if args.context_chars is not None:
        options["context_chars"] = args.context_chars
    terminal = None if args.json or args.local else _TerminalAnswer()
    result = _inference("ask", args, options, on_answer=terminal)
    if terminal is not None and terminal.printed:
        print()
    _print_answer(result, args.json, streamed=terminal is not None and terminal.printed)
    return 0


def _print_sql(result: dict, as_json: bool) -> None:
    if as_json:
        keep = ("question", "answer", "sql", "columns", "rows", "truncated", "error", "tables", "rewrites", "database", "run_id", "timings", "llm")
        print(json.dumps({k: result.get(k) for k in keep}))
        return
    print(f"{result['sql'] or '(no SQL)'}\n")
    print(result["answer"])
    print(f"\nrun {result.get('run_id', '')}: " + ", ".join(f"{k}={v}" for k, v in result.get("timings", {}).items()), file=sys.stderr)


def _is_loopback(url: str) -> bool:
    return urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")


def _sql(args: argparse.Namespace) -> int:
    # An absolute path: the run resolves it in the webserver's working directory, not in ours.
    database = str(Path(args.database).resolve()) if args.database else None
    if database and (args.local or _is_loopback(args.url)) and not Path(database).is_file():
        raise ClientError(f"no DuckDB database at {database}: check --database")
    options = dict(database=database, n_rephrasings=args.rephrasings, max_tables=args.max_tables, max_rows=args.max_rows,
                   query_timeout_s=args.query_timeout, max_tokens=args.max_tokens, sensitive=args.sensitive or None)
    result = _inference("sql", args, options)
    _print_sql(result, args.json)
    return 1 if result.get("error") else 0


def _result(args: argparse.Namespace) -> int:
    from rag_assets import client

    result = client.result(args.run_id, url=args.url, timeout_s=args.wait)
    if "sources" in result:
        _print_answer(result, args.json)
        return 0
    _print_sql(result, args.json)
    return 1 if result.get("error") else 0


def _sql_eval(args: argparse.Namespace) -> int:
    import tempfile

    from rag_assets.inference.sql.assets import open_schema_index
    from rag_assets.inference.sql.evaluate import run_sql_eval
    from rag_assets.inference.sql.gold import GOLD
    from rag_assets.inference.sql.gold_new import HELD_OUT
    from rag_assets.inference.sql.resource import WarehouseResource
    from resources import EmbedderResource, MilvusResource
    from resources.llm import LLMResource

    database = Path(args.database).resolve() if args.database else WarehouseResource().resolved_path
    if not database.is_file():
        raise ClientError(f"no warehouse at {database}: check --database, or materialize the `warehouse` asset first")
    llm = LLMResource(provider=args.provider or "", model=args.model or "", base_url=args.base_url or "", openai_api_key=os.environ.get("OPENAI_API_KEY", ""),
                      gemini_api_key=os.environ.get("GEMINI_API_KEY", ""))
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="rag-sql-eval-") as tmp:  # its own Milvus Lite file: never contends with `rag dev`
        index = open_schema_index(MilvusResource(uri=str(Path(tmp) / "schema.db")), EmbedderResource())
        questions = HELD_OUT if args.held_out else GOLD
        result = run_sql_eval(database, llm, index, questions[: args.limit] if args.limit else questions, n_rephrasings=args.rephrasings,
                              max_tables=args.max_tables, log=log, constrained=not args.unconstrained, plan=args.plan)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"execution accuracy: {result.accuracy:.2%} ({result.correct}/{result.questions}); "
          f"valid queries: {result.executed}/{result.questions}; models: {', '.join(result.models) or 'none'}")
    print("timings: " + ", ".join(f"{k}={v}" for k, v in result.timings.items()))
    return 0


def _sources(args: argparse.Namespace) -> int:
    from rag_assets.client import read_sources, sources_file_problem
    from rag_assets.sources.spec import sources_file_path

    path = Path(args.sources).resolve() if args.sources else sources_file_path()
    if args.action == "list":
        specs = read_sources(path)
        if not specs:
            print(f"no sources declared in {path}", file=sys.stderr)
            return 0
        width = max(len(name) for name in specs)
        print(f"{'name':{width}}  {'kind':13} {'sensitive':9}  schedule")
        for spec in specs.values():
            print(f"{spec.name:{width}}  {spec.kind:13} {str(spec.sensitive).lower():9}  {spec.schedule}")
        return 0
    from rag_assets.sources.edit import remove_sources
    from rag_assets.sources.spec import SourcesFileError

    try:
        removed = remove_sources(path, args.names)
    except KeyError as exc:  # names an undeclared source; nothing was written
        raise ClientError(f"unknown source: {exc.args[0]}; check the names with `rag sources list`") from exc
    except (SourcesFileError, OSError) as exc:
        raise ClientError(sources_file_problem(path, exc)) from exc
    print(f"removed {', '.join(removed)} from {path} (removal confirmed): the running sensor deletes their partitions "
          "and purges their data on its next tick")
    return 0


def _llm_options(parser: argparse.ArgumentParser, provider_help: str = "pin the LLM provider for this run") -> None:
    parser.add_argument("--provider", choices=["local", "openai", "gemini"], help=provider_help)
    parser.add_argument("--model", help="the model for --provider")
    parser.add_argument("--base-url", help="endpoint for --provider (an OpenAI-compatible server: vLLM, Ollama, llama.cpp)")


def _run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by the commands that launch an inference run (`ask`, `sql`)."""
    parser.add_argument("question")
    parser.add_argument("--url", default=DEFAULT_URL, help="Dagster webserver")
    parser.add_argument("--local", action="store_true", help="run the same job in this process, no webserver")
    _llm_options(parser)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="rag-assets command line")
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="score retrieval on a BEIR-format dataset through the ingestion assets")
    ev.add_argument("--dataset", required=True, help="folder with corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    ev.add_argument("--mode", default="hybrid", choices=["dense", "bm25", "hybrid", "all"])
    ev.add_argument("--split", default="test")
    ev.add_argument("--fusion", default="auto", choices=["auto", "rrf", "weighted"], help="hybrid fusion (default auto)")
    ev.add_argument("--dense-weight", type=float, default=0.7, help="dense weight for --fusion weighted")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--cache-dir", default=None, help="embedding cache folder (default: a temporary one)")
    ev.add_argument("--max-queries", type=int, default=None, help="evaluate a slice: at most this many queries")
    ev.add_argument("--max-docs", type=int, default=None, help="evaluate a slice: at most this many documents")
    ev.set_defaults(func=_eval)

    ask = sub.add_parser("ask", help="ask a question: multi-query RAG as a Dagster run, awaited")
    _run_options(ask)
    ask.add_argument("--top-k", type=int, default=5)
    ask.add_argument("--rephrasings", type=_non_negative, default=None,
                     help="rewrites of the question to retrieve with (default: 3, or none when the bundled local model would write them: its rewrites made the sources worse)")
    ask.add_argument("--mode", default="hybrid", choices=["dense", "bm25", "hybrid"])
    ask.add_argument("--source", action="append", help="restrict to a source (repeatable)")
    ask.add_argument("--max-tokens", type=int, default=256)
    ask.add_argument("--context-chars", type=_non_negative, default=None,
                     help="source text in the answer prompt, all sources together (0: the chunks whole; default: 2400, about 600 tokens, when the local model answers, else whole)")
    ask.set_defaults(func=_ask)

    sq = sub.add_parser("sql", help="ask a question about a DuckDB database (default: the platform's warehouse) as a Dagster run")
    _run_options(sq)
    sq.add_argument("--database", help="a DuckDB file to ask about (default: the warehouse)")
    sq.add_argument("--rephrasings", type=int, default=3)
    sq.add_argument("--max-tables", type=int, default=3, help="tables of the schema put in the prompt")
    sq.add_argument("--max-rows", type=int, default=100)
    sq.add_argument("--query-timeout", type=float, default=10.0, help="seconds the query may run")
    sq.add_argument("--max-tokens", type=int, default=256)
    sq.add_argument("--sensitive", action="store_true", help="keep the prompts on non-external models")
    sq.set_defaults(func=_sql)

    res = sub.add_parser("result", help="the answer of an earlier `rag ask` or `rag sql` run, by run id")
    res.add_argument("run_id")
    res.add_argument("--url", default=DEFAULT_URL, help="Dagster webserver")
    res.add_argument("--wait", type=float, default=0.0, help="seconds to wait if the run is still going (default: do not wait)")
    res.add_argument("--json", action="store_true", help="print one JSON object")
    res.set_defaults(func=_result)

    se = sub.add_parser("sql-eval", help="execution accuracy of the SQL assistant on the gold questions over the warehouse")
    se.add_argument("--database", help="the warehouse DuckDB file (default: $RAG_HOME/warehouse.duckdb)")
    _llm_options(se, "pin the LLM provider (default: the policy)")
    se.add_argument("--rephrasings", type=int, default=3)
    se.add_argument("--max-tables", type=int, default=3)
    se.add_argument("--limit", type=int, default=None, help="only the first N gold questions")
    se.add_argument("--held-out", action="store_true", help="the held-out questions (written before tuning) instead of the gold ones")
    se.add_argument("--unconstrained", action="store_true", help="free-text SQL, no grammar (as before issue 13)")
    se.add_argument("--plan", choices=PLANS, default=PLANS[0],
                    help="how the query is written: under the grammar of the nearest example's shape (default), of the shape the "
                         "model names first (two-step), one grammar for every question (one-step), or that with aggregate-first groups")
    se.add_argument("--json", action="store_true", help="print one JSON object")
    se.set_defaults(func=_sql_eval)

    dev = sub.add_parser("dev", help="start a Milvus Lite server and `dagster dev` wired to it")
    dev.add_argument("--home", default=".rag", help="where Dagster, Milvus and asset files live (RAG_HOME)")
    dev.add_argument("--port", type=int, default=3000, help="Dagster webserver port")
    dev.add_argument("--milvus-port", type=int, default=19530)
    dev.add_argument("--sources", default=None, help="the sources file (default: $RAG_SOURCES, else ./sources.yaml)")
    dev.add_argument("--workspace", default="workspace.yaml")
    dev.add_argument("--no-model-servers", action="store_true",
                     help="start no model server (embedder, LLM): every run loads its models itself")
    dev.add_argument("--postgres-url", default=os.environ.get("RAG_DAGSTER_POSTGRES_URL", ""),
                     help="keep Dagster's runs, events and schedules in this PostgreSQL database, e.g. "
                     "postgresql://user:pass@127.0.0.1:5432/dagster (default: $RAG_DAGSTER_POSTGRES_URL; unset: SQLite in --home)")
    dev.set_defaults(func=_dev)

    src = sub.add_parser("sources", help="the sources declared in the sources file: list them, remove some")
    file_option = argparse.ArgumentParser(add_help=False)
    file_option.add_argument("--sources", help="the sources file (default: $RAG_SOURCES, else ./sources.yaml)")
    actions = src.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[file_option], help="name, kind, sensitivity and schedule of each source")
    remove = actions.add_parser("remove", parents=[file_option], help="remove sources from the file (confirmed): "
                                "the running sensor then deletes their partitions and purges their data")
    remove.add_argument("names", nargs="+", metavar="NAME")
    src.set_defaults(func=_sources)
    add_experiment_parser(sub)
    return parser


def _debug() -> bool:
    return os.environ.get("RAG_DEBUG", "") not in ("", "0")


def _fail(command: str, message: str) -> int:
    print(f"rag {command}: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "base_url", None) and not args.provider:
        parser.error("--base-url needs --provider (openai for an OpenAI-compatible server, or gemini)")
    from rag_assets.eval.beir import BeirFormatError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (ClientError, BeirFormatError) as exc:  # raised where the problem is known, with what to do
        if _debug():
            raise
        return _fail(args.command, str(exc))
    except Exception as exc:  # the last-resort boundary
        if _debug():
            raise
        detail = " ".join(str(exc).split())[:300]
        return _fail(args.command, f"unexpected {type(exc).__name__}: {detail}; rerun with RAG_DEBUG=1 for the traceback")


if __name__ == "__main__":
    raise SystemExit(main())
