"""The SQL assistant on the demo platform: schema retrieval quality and execution accuracy.

Ingests the demo source (this repository's docs/ and README.md) in-process, builds the `warehouse`
and `schema_index` assets, then
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
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine  # noqa: E402
from rag_assets.inference.sql.assets import open_schema_index, schema_index, warehouse  # noqa: E402
from rag_assets.inference.sql.evaluate import gold_rows, is_correct, run_sql_eval  # noqa: E402
from rag_assets.inference.sql.gold import GOLD  # noqa: E402
from rag_assets.inference.sql.gold_new import HELD_OUT  # noqa: E402
from rag_assets.inference.sql.resource import WarehouseResource  # noqa: E402
from rag_assets.inference.sql.schema_index import database_key, rank_tables  # noqa: E402
from rag_assets.pipeline import QUIET_LOGS, Workspace  # noqa: E402
from resources.llm import LLMResource  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", default="local", choices=["local", "openai", "gemini"])
    parser.add_argument("--model", default="")
    parser.add_argument("--base-url", default="")
    parser.add_argument("--rephrasings", type=int, default=3)
    parser.add_argument("--max-tables", type=int, default=3)
    parser.add_argument("--sets", default="gold,held_out", help="comma separated: gold, held_out")
    parser.add_argument("--unconstrained", action="store_true", help="free-text SQL, as before issue #13")
    parser.add_argument("--verbose", action="store_true", help="one line per question on stderr")
    args = parser.parse_args()
    sets = {name: {"gold": GOLD, "held_out": HELD_OUT}[name] for name in args.sets.split(",")}
    with tempfile.TemporaryDirectory(prefix="rag-sql-bench-") as tmp:
        ws = Workspace(root=Path(tmp) / "ws")
        ws.write_sources([{"name": "rag-assets-docs", "kind": "markdown", "paths": [str(ROOT / "docs"), str(ROOT / "README.md")]}])
        ws.materialize("rag-assets-docs")
        target = Path(tmp) / "warehouse.duckdb"
        res = {**ws.resources(), "warehouse_db": WarehouseResource(path=str(target), eval_results=str(Path(tmp) / "none.jsonl"))}
        assert dg.materialize([warehouse, schema_index], resources=res, instance=ws.instance, run_config=QUIET_LOGS).success

        index = open_schema_index(res["milvus"], res["embedder"])
        key = database_key(target)
        report = {"constrained": not args.unconstrained, "rephrasings": args.rephrasings}
        for name, questions in sets.items():
            ranked = {q.question: [t for t, _ in rank_tables(index.search(key, [q.question], 12))] for q in questions}
            oracle = sum(is_correct(target, q, gold_rows(target, q)) for q in questions) / len(questions)  # the scorer on the gold SQL's own rows
            llm = LLMResource(provider=args.provider, model=args.model, base_url=args.base_url,
                              openai_api_key=os.environ.get("OPENAI_API_KEY", ""), gemini_api_key=os.environ.get("GEMINI_API_KEY", ""))
            log = (lambda m: print(m, file=sys.stderr)) if args.verbose else (lambda m: None)
            result = run_sql_eval(target, llm, index, questions, n_rephrasings=args.rephrasings, max_tables=args.max_tables, log=log,
                                  constrained=not args.unconstrained)
            report[name] = {
                "questions": len(questions),
                "schema_top1_needed_table": sum(ranked[q.question][0] in q.tables for q in questions),
                f"schema_all_needed_in_top{args.max_tables}": sum(set(q.tables) <= set(ranked[q.question][: args.max_tables]) for q in questions),
                "execution_accuracy": result.accuracy, "correct": result.correct, "valid_queries": result.executed,
                "by_shape": result.by_shape(),
                "correct_with_empty_gold": sum(s.correct and s.gold_empty for s in result.scores),  # any empty result scores there
                "gold_sql_accuracy": oracle, "models": result.models, "timings": result.timings,
                "seconds_per_question_median": sorted(s.seconds for s in result.scores)[len(result.scores) // 2],
                "answers": [[s.question, s.sql, s.correct] for s in result.scores],
            }
    print(json.dumps({**report, "machine": machine()}))


if __name__ == "__main__":
    main()
