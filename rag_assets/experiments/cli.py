"""`rag experiment run FILE`, `rag experiment compare NAME` and `rag experiment delete FILE`.

Errors the user can fix are raised as `ClientError` (one line: what is wrong, what to do); `rag`'s `main`
prints them as `rag experiment: ...` with exit code 2. `run` exits 1 when a variant or the report failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag_assets.client import DEFAULT_URL, Client, ClientError, stderr_progress


def _load(path: str):
    from rag_assets.experiments.spec import ExperimentError, load_experiment

    try:
        return load_experiment(Path(path))
    except ExperimentError as exc:
        raise ClientError(f"{exc}; fix the experiment file (experiments/demo.yaml is a commented example)") from exc


def _print_comparison(client: Client, name: str, as_json: bool) -> bool:
    from rag_assets.experiments.compare import comparison, fetch_rows, to_json, to_markdown

    rows = fetch_rows(client, name)
    if as_json:
        print(to_json(comparison(rows, name)))
    elif rows:
        print(to_markdown(comparison(rows, name)), end="")
    return bool(rows)


def run(args: argparse.Namespace) -> int:
    from rag_assets.experiments.launch import run_experiment
    from rag_assets.variants import VariantError

    exp = _load(args.file)
    client = Client(args.url)
    progress = None if args.quiet else stderr_progress
    try:
        outcome = run_experiment(exp, client, concurrency=args.concurrency, on_progress=progress, timeout_s=args.timeout)
    except VariantError as exc:
        raise ClientError(str(exc)) from exc
    for v in outcome.variants:
        detail = f": {v.error}" if v.error else ""
        print(f"{v.variant}: {v.status} in {v.seconds:.1f} s, runs {', '.join(v.run_ids) or 'none'}{detail}", file=sys.stderr)
    if outcome.report_error:
        print(f"report: {outcome.report_error}", file=sys.stderr)
    if len(outcome.failed) < len(outcome.variants):
        _print_comparison(client, exp.name, as_json=False)
    return 0 if outcome.ok else 1


def compare(args: argparse.Namespace) -> int:
    client = Client(args.url)
    if not _print_comparison(client, args.name, args.json):
        raise ClientError(f"no evaluation of experiment {args.name!r} on {client.url}: check the name "
                          "(the experiment file's `name`), or run it with `rag experiment run FILE`")
    return 0


def delete(args: argparse.Namespace) -> int:
    from rag_assets.experiments.delete import delete_experiment

    exp = _load(args.file)
    plan = delete_experiment(exp.variants, Client(args.url), yes=args.yes)
    print(plan.describe())
    if not args.yes:
        print("nothing deleted: run again with --yes to delete the above", file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `experiment run|compare|delete` to `rag`'s subcommands."""
    exp = subparsers.add_parser("experiment", help="build variants of the pipeline side by side, evaluate and compare them")
    actions = exp.add_subparsers(dest="action", required=True)
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--url", default=DEFAULT_URL, help="Dagster webserver")

    run_ = actions.add_parser("run", parents=[url], help="register the file's variants, build and evaluate each on its sources, "
                              "then compare (needs `rag dev`)")
    run_.add_argument("file", help="the experiment file (see experiments/demo.yaml)")
    run_.add_argument("--concurrency", type=_positive_int, default=None, help="variants built at once (default: the file's, else 4)")
    run_.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for each run")
    run_.add_argument("--quiet", action="store_true", help="no progress on stderr")
    run_.set_defaults(func=run)

    cmp_ = actions.add_parser("compare", parents=[url], help="the comparison table of an experiment's evaluations")
    cmp_.add_argument("name", help="the experiment's name")
    cmp_.add_argument("--json", action="store_true", help="print one JSON object")
    cmp_.set_defaults(func=compare)

    del_ = actions.add_parser("delete", parents=[url], help="remove the file's variants (never the default) and the data only "
                              "they stored; prints the plan unless --yes")
    del_.add_argument("file", help="the experiment file whose variants to delete")
    del_.add_argument("--yes", action="store_true", help="delete (without it, only print what would be deleted)")
    del_.set_defaults(func=delete)
    return exp
