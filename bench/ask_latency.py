"""`rag ask` over GraphQL vs `rag ask --local`, same questions, same index (one Milvus Lite server).

Starts the dev stack (Milvus Lite server + `dagster dev`) on free ports with the demo source, waits
for the sensor's ingest run, then runs each question through both paths as the CLI does (a fresh
process each time). Prints medians of total wall time and of the run's own breakdown (launch: the
`launchRun` call; retrieval and LLM: measured inside the run; other: process start, imports, model
loads, event polling), and the GraphQL path's overhead: the difference of the medians, and the
median of the per-question differences.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, median  # noqa: E402
from rag_assets.devserver import DevStack, free_port  # noqa: E402
from rag_assets.model_servers import default_specs  # noqa: E402

QUESTIONS = ["How do I add my own source?", "What does the index asset store?", "How are chunk ids computed?",
             "Why run a Milvus Lite server in development?", "What happens when a source is removed?"]
RUNS = '{ runsOrError(filter: {pipelineName: "ingest"}) { ... on Runs { results { status } } } }'


def run_cli(args: list[str], env: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "rag"), "ask", *args, "--json", "--quiet"],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout), time.perf_counter() - start


def breakdown(out: dict, wall: float) -> dict:
    t = out["timings"]
    retrieval = t.get("retrieve_original_s", 0) + t.get("retrieve_all_s", 0)
    row = {"wall_s": wall, "launch_s": t.get("launch_s", 0.0), "retrieval_s": retrieval, "llm_s": t.get("llm_s", 0.0)}
    row["other_s"] = wall - row["launch_s"] - retrieval - row["llm_s"]  # process start, imports, model loads, polling
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1, help="passes over the questions")
    parser.add_argument("--max-tokens", type=int, default=256, help="answer length (the CLI's default: 256)")
    parser.add_argument("--rephrasings", type=int, default=3, help="rewrites per question (the CLI's default: 3)")
    parser.add_argument("--no-model-servers", action="store_true", help="runs load their models (as before `rag dev` served them)")
    parser.add_argument("--graphql-only", action="store_true", help="skip the `--local` path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rag-ask-bench-") as tmp:
        home = Path(tmp)
        sources = home / "sources.yaml"
        sources.write_text(yaml.safe_dump({"sources": [{"name": "rag-assets-docs", "kind": "markdown",
                                                        "paths": [str(ROOT / "docs"), str(ROOT / "README.md")]}]}))
        specs = None if args.no_model_servers else default_specs()  # as `rag dev` starts them
        stack = DevStack(home, free_port(), free_port(), sources, ROOT / "workspace.yaml", log_dir=home / "logs",
                         model_servers=specs).start(300)
        try:
            while True:
                runs = httpx.post(f"{stack.url}/graphql", json={"query": RUNS}, timeout=10).json()["data"]["runsOrError"]["results"]
                if runs and runs[0]["status"] in ("SUCCESS", "FAILURE"):
                    break
                time.sleep(2)
            env = {**os.environ, **{k: v for k, v in stack.environment().items() if k.startswith("RAG_")}}
            common = ["--max-tokens", str(args.max_tokens), "--rephrasings", str(args.rephrasings)]
            graphql, local = [], []
            for _ in range(args.rounds):
                for q in QUESTIONS:
                    graphql.append(breakdown(*run_cli([q, "--url", stack.url, *common], env)))
                    if not args.graphql_only:
                        local.append(breakdown(*run_cli([q, "--local", *common], env)))
        finally:
            stack.stop()

    def med(rows: list[dict]) -> dict:
        return {k: round(median([r[k] for r in rows]), 3) for k in rows[0]}

    g = med(graphql)
    settings = {"rephrasings": args.rephrasings, "max_tokens": args.max_tokens, "model_servers": not args.no_model_servers}
    if not local:
        print(json.dumps({"questions": len(graphql), "settings": settings, "graphql_median": g, "machine": machine()}))
        return
    loc = med(local)
    paired = [gq["wall_s"] - lq["wall_s"] for gq, lq in zip(graphql, local)]  # same question, back to back
    print(json.dumps({"questions": len(graphql), "settings": settings, "graphql_median": g, "local_median": loc,
                      "graphql_overhead_s": round(g["wall_s"] - loc["wall_s"], 3),
                      "graphql_overhead_paired_median_s": round(median(paired), 3),
                      "graphql_overhead_paired_max_s": round(max(paired), 3), "machine": machine()}))


if __name__ == "__main__":
    main()
