"""The SQL assistant on the demo platform: schema retrieval quality and execution accuracy.

Builds a realistic platform in-process with the project's own code paths (`build_platform`): the demo
source (this repository's docs/ and README.md); a sensitive `files` source of a few notes and one corrupt
PDF (recorded as a document with an error); a source whose declared folder does not exist (its ingestion
run fails); `rag eval` on a small SciFact slice (three retrieval modes, recorded as `eval_results`); then
the `warehouse` and `schema_index` assets, so that no gold answer is empty. Then
- schema retrieval (no LLM): for every gold question, whether the tables its gold SQL needs are the
  first hit, and all among the `--max-tables` tables put in the prompt;
- `rag sql-eval`: execution accuracy of the configured provider (default: the bundled local model), on
  the 25 gold questions and, scored separately, on the held-out questions written before the
  constrained generator was tuned (`gold_new.HELD_OUT`); per question shape, seconds per question.
`--unconstrained` writes free text as before issue #13 (no grammar, no examples).
Prints one JSON line. The baseline is the gold SQL itself, scored by the same scorer (should be 1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import SCIFACT, machine  # noqa: E402
from rag_assets.eval.run import run_eval  # noqa: E402
from rag_assets.inference.sql.assets import open_schema_index, schema_index, warehouse  # noqa: E402
from rag_assets.inference.sql.evaluate import PLANS, gold_rows, is_correct, run_sql_eval  # noqa: E402
from rag_assets.inference.sql.gold import GOLD  # noqa: E402
from rag_assets.inference.sql.gold_new import HELD_OUT  # noqa: E402
from rag_assets.inference.sql.resource import WarehouseResource  # noqa: E402
from rag_assets.inference.sql.schema_index import database_key, rank_tables  # noqa: E402
from rag_assets.pipeline import INGEST_ASSETS, QUIET_LOGS, Workspace  # noqa: E402
from resources import EmbedderResource, MilvusResource  # noqa: E402
from resources.llm import LLMResource  # noqa: E402

NOTES = {
    "oncall.md": "# On-call rota\n\nThe platform team rotates on-call weekly. Pages go to the #platform-alerts channel.\n",
    "budget.txt": "Infrastructure budget 2026: 40k for GPUs, 12k for storage, 5k for monitoring.\n",
    "vendors.md": "# Vendors\n\n## Storage\n\nObject storage is bought from two vendors under a yearly contract.\n",
}
CORRUPT_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF garbage\n"


@contextmanager
def rag_home(path: Path):
    """`RAG_HOME` set to `path` for the block (where `rag eval` records its results), then restored."""
    before = os.environ.get("RAG_HOME")
    os.environ["RAG_HOME"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAG_HOME", None)
        else:
            os.environ["RAG_HOME"] = before


def platform_sources(data: Path) -> list[dict]:
    """The demo docs; a sensitive folder of notes with one corrupt PDF; a source whose folder is missing."""
    notes = data / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    for name, text in NOTES.items():
        (notes / name).write_text(text, encoding="utf-8")
    (notes / "scan.pdf").write_bytes(CORRUPT_PDF)
    return [
        {"name": "rag-assets-docs", "kind": "markdown", "paths": [str(ROOT / "docs"), str(ROOT / "README.md")],
         "description": "This project's documentation."},
        {"name": "team-notes", "kind": "files", "paths": [str(notes)], "sensitive": True, "schedule": "manual",
         "description": "The platform team's private notes."},
        {"name": "archive", "kind": "markdown", "paths": [str(data / "archive")], "description": "Old design notes (moved away)."},
    ]


def build_platform(root: Path, scifact: Path, eval_docs: int = 300, eval_queries: int = 30) -> tuple[Workspace, Path]:
    """Ingest the sources (the archive's run fails, as a missing folder fails it), evaluate retrieval on a
    SciFact slice with `RAG_HOME` under `root`, then materialize `warehouse` and `schema_index`."""
    ws = Workspace(root=root / "ws", cache_dir=root / "embedding_cache")
    ws.write_sources(platform_sources(root / "data"))
    ws.materialize("rag-assets-docs")
    ws.materialize("team-notes")
    failed = dg.materialize(INGEST_ASSETS, partition_key=ws.add_partition("archive"), instance=ws.instance, resources=ws.resources(),
                            run_config=QUIET_LOGS, raise_on_error=False)
    assert not failed.success, "ingesting a source whose folder does not exist should fail its run"
    home = root / "home"
    with rag_home(home):
        run_eval(scifact, ["dense", "bm25", "hybrid"], cache_dir=root / "embedding_cache", max_docs=eval_docs, max_queries=eval_queries)
    target = home / "warehouse.duckdb"
    res = {**ws.resources(), "warehouse_db": WarehouseResource(path=str(target), eval_results=str(home / "eval_results.jsonl"))}
    assert dg.materialize([warehouse, schema_index], resources=res, instance=ws.instance, run_config=QUIET_LOGS).success
    return ws, target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", default="local", choices=["local", "openai", "gemini"])
    parser.add_argument("--model", default="")
    parser.add_argument("--base-url", default="")
    parser.add_argument("--rephrasings", type=int, default=3)
    parser.add_argument("--max-tables", type=int, default=3)
    parser.add_argument("--sets", default="gold,held_out", help="comma separated: gold, held_out")
    parser.add_argument("--unconstrained", action="store_true", help="free-text SQL, as before issue #13")
    parser.add_argument("--plan", default="example-shape", choices=PLANS,
                        help="example-shape: the query is written under the grammar of the nearest worked example's shape; "
                        "two-step: the model names the shape first (one more call); one-step: one grammar for every question; "
                        "agg-first: one step, a grouped query may start with its aggregate")
    parser.add_argument("--scifact", default=str(SCIFACT), help="the BEIR SciFact folder `rag eval` slices for eval_results")
    parser.add_argument("--workdir", default="", help="build the platform here, or reuse the one an earlier run built here")
    parser.add_argument("--verbose", action="store_true", help="one line per question on stderr")
    args = parser.parse_args()
    sets = {name: {"gold": GOLD, "held_out": HELD_OUT}[name] for name in args.sets.split(",")}
    with tempfile.TemporaryDirectory(prefix="rag-sql-bench-") as tmp:
        root = Path(args.workdir) if args.workdir else Path(tmp)
        target = root / "home" / "warehouse.duckdb"
        if not target.exists():  # a --workdir built by an earlier run is reused as it is
            build_platform(root, Path(args.scifact))
        ws = Workspace(root=root / "ws", cache_dir=root / "embedding_cache")
        index = open_schema_index(MilvusResource(uri=str(ws.root / "milvus.db")), EmbedderResource(cache_dir=str(ws.cache_dir)))
        key = database_key(target)
        report = {"constrained": not args.unconstrained, "plan": args.plan, "rephrasings": args.rephrasings}
        for name, questions in sets.items():
            ranked = {q.question: [t for t, _ in rank_tables(index.search(key, [q.question], 12))] for q in questions}
            oracle = sum(is_correct(target, q, gold_rows(target, q)) for q in questions) / len(questions)  # the scorer on the gold SQL's own rows
            llm = LLMResource(provider=args.provider, model=args.model, base_url=args.base_url,
                              openai_api_key=os.environ.get("OPENAI_API_KEY", ""), gemini_api_key=os.environ.get("GEMINI_API_KEY", ""))
            log = (lambda m: print(m, file=sys.stderr)) if args.verbose else (lambda m: None)
            load_before = os.getloadavg()[0]
            result = run_sql_eval(target, llm, index, questions, n_rephrasings=args.rephrasings, max_tables=args.max_tables, log=log,
                                  constrained=not args.unconstrained, plan=args.plan)
            report[name] = {
                "questions": len(questions),
                "schema_top1_needed_table": sum(ranked[q.question][0] in q.tables for q in questions),
                f"schema_all_needed_in_top{args.max_tables}": sum(set(q.tables) <= set(ranked[q.question][: args.max_tables]) for q in questions),
                "execution_accuracy": result.accuracy, "correct": result.correct, "valid_queries": result.executed,
                "by_shape": result.by_shape(),
                "empty_gold_answers": sum(s.gold_empty for s in result.scores),  # should be 0: the platform has every kind of row
                "correct_with_empty_gold": sum(s.correct and s.gold_empty for s in result.scores),  # any empty result scores there
                "gold_sql_accuracy": oracle, "models": result.models, "timings": result.timings,
                "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before and after the set
                "seconds_per_question_median": sorted(s.seconds for s in result.scores)[len(result.scores) // 2],
                "answers": [[s.question, s.sql, s.correct] for s in result.scores],
            }
    print(json.dumps({**report, "machine": machine()}))


if __name__ == "__main__":
    main()
