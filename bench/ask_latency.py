"""`rag ask` over GraphQL vs `rag ask --local`, same questions, same index (one Milvus Lite server).

Starts the dev stack (Milvus Lite server + `dagster dev`) on free ports with the demo source, waits
for the sensor's ingest run, then runs each question through both paths as the CLI does (a fresh
process each time). Prints medians of total wall time and of the run's own breakdown (launch: the
`launchRun` call; retrieval and LLM: measured inside the run; other: process start, imports, model
loads, event polling), and the GraphQL path's overhead: the difference of the medians, and the
median of the per-question differences. The answer streams: `first_token_s` is when its first piece reached
the CLI (from the CLI's start), `answer_first_token_s` when the model wrote it (from the answer step's start).

`--concurrent N` then launches N `rag ask` processes at once over GraphQL (the questions cycled) and reports
how many succeeded, their p50/p95 and the throughput (answers per minute) against one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, median  # noqa: E402
from bench.demo_stack import demo_stack  # noqa: E402

QUESTIONS = ["How do I add my own source?", "What does the index asset store?", "How are chunk ids computed?",
             "Why run a Milvus Lite server in development?", "What happens when a source is removed?"]
RUN_EVENTS = ('query E($id: ID!) { logsForRun(runId: $id, limit: 5000) { ... on EventConnection { events { __typename '
              '... on MessageEvent { timestamp stepKey } } } } }')
MILESTONES = {"RunEnqueuedEvent": "enqueued", "RunStartingEvent": "starting", "RunStartEvent": "started", "RunSuccessEvent": "ended"}


def run_phases(url: str, run_id: str) -> dict:
    """Where a run's own time goes, from its event timestamps: waiting in the queue (enqueued -> the daemon launches
    it), the run process starting and loading the code location (-> RUN_START), to its first step, and the steps."""
    events = httpx.post(f"{url}/graphql", json={"query": RUN_EVENTS, "variables": {"id": run_id}}, timeout=30).json()
    at: dict[str, float] = {}
    for e in events["data"]["logsForRun"]["events"]:
        name = MILESTONES.get(e["__typename"]) or ("first_step" if e["__typename"] == "ExecutionStepStartEvent" else None)
        if name and name not in at:
            at[name] = float(e["timestamp"]) / 1000
    order = ["enqueued", "starting", "started", "first_step", "ended"]
    return {f"{a}_to_{b}_s": round(at[b] - at[a], 3) for a, b in zip(order, order[1:]) if a in at and b in at}


def run_cli(args: list[str], env: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "rag"), "ask", *args, "--json", "--quiet"],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout), time.perf_counter() - start


def breakdown(out: dict, wall: float) -> dict:
    t = out["timings"]
    retrieval = t.get("retrieve_original_s", 0) + t.get("retrieve_all_s", 0)
    row = {"wall_s": wall, "launch_s": t.get("launch_s", 0.0), "retrieval_s": retrieval, "llm_s": t.get("llm_s", 0.0),
           "answer_step_s": t.get("answer_s", 0.0),  # the answer call (prompt + generation); llm_s - answer_step_s: the rewrites
           "llm_tokens_in": out.get("llm", {}).get("llm_tokens_in", 0), "llm_tokens_out": out.get("llm", {}).get("llm_tokens_out", 0)}
    row["other_s"] = wall - row["launch_s"] - retrieval - row["llm_s"]  # process start, imports, model loads, polling
    if "first_token_s" in t:  # the client's clock starts at launch; the CLI process started (wall - total_s) earlier
        row["first_token_s"] = wall - t["total_s"] + t["first_token_s"]
    if "answer_first_token_s" in t:
        row["answer_first_token_s"] = t["answer_first_token_s"]
    return row


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def concurrent_asks(n: int, url: str, common: list[str], env: dict) -> dict:
    """N `rag ask` processes launched at once: successes, p50/p95 wall, makespan, answers per minute."""
    def one(i: int):
        try:
            return breakdown(*run_cli([QUESTIONS[i % len(QUESTIONS)], "--url", url, "--timeout", "1800", *common], env))
        except subprocess.CalledProcessError as exc:
            return {"error": (exc.stderr or "")[-300:]}

    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        rows = list(pool.map(one, range(n)))
    makespan = time.perf_counter() - started
    ok = [r for r in rows if "error" not in r]
    walls = [r["wall_s"] for r in ok]
    return {"launched": n, "succeeded": len(ok), "errors": [r["error"] for r in rows if "error" in r][:3],
            "makespan_s": round(makespan, 1), "answers_per_min": round(len(ok) / makespan * 60, 2),
            "wall_p50_s": round(median(walls), 2) if walls else None, "wall_p95_s": round(percentile(walls, 0.95), 2) if walls else None,
            "first_token_p50_s": round(median([r["first_token_s"] for r in ok if "first_token_s" in r]), 2) if ok else None,
            "retrieval_p50_s": round(median([r["retrieval_s"] for r in ok]), 2) if ok else None,
            "llm_p50_s": round(median([r["llm_s"] for r in ok]), 2) if ok else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1, help="passes over the questions")
    parser.add_argument("--max-tokens", type=int, default=256, help="answer length (the CLI's default: 256)")
    parser.add_argument("--rephrasings", type=int, default=None, help="rewrites per question (default: the CLI's)")
    parser.add_argument("--no-model-servers", action="store_true", help="runs load their models (as before `rag dev` served them)")
    parser.add_argument("--graphql-only", action="store_true", help="skip the `--local` path")
    parser.add_argument("--concurrent", type=int, default=0, help="then launch this many asks at once over GraphQL")
    parser.add_argument("--context-chars", type=int, default=None, help="source text in the answer prompt (default: the CLI's)")
    args = parser.parse_args()
    load = [round(os.getloadavg()[0], 2)]
    with demo_stack(model_servers=not args.no_model_servers) as (stack, env):
        common = ["--max-tokens", str(args.max_tokens), *(["--rephrasings", str(args.rephrasings)] if args.rephrasings is not None else []),
                  *(["--context-chars", str(args.context_chars)] if args.context_chars is not None else [])]
        graphql, local, at_once = [], [], None
        for _ in range(args.rounds):
            for q in QUESTIONS:
                out, wall = run_cli([q, "--url", stack.url, *common], env)
                graphql.append({**breakdown(out, wall), **run_phases(stack.url, out["run_id"]), "question": q,
                                "answer": out["answer"]})
                if not args.graphql_only:
                    local.append(breakdown(*run_cli([q, "--local", *common], env)))
        if args.concurrent:
            at_once = concurrent_asks(args.concurrent, stack.url, common, env)

    load.append(round(os.getloadavg()[0], 2))

    def med(rows: list[dict]) -> dict:
        keys = dict.fromkeys(k for r in rows for k, v in r.items() if isinstance(v, (int, float)))
        return {k: round(median([r[k] for r in rows if k in r]), 3) for k in keys}

    g = med(graphql)
    settings = {"rephrasings": args.rephrasings, "max_tokens": args.max_tokens, "model_servers": not args.no_model_servers,
                "context_chars": args.context_chars, "llm_threads": os.environ.get("RAG_LLM_THREADS", "default"), "load_before_after": load}
    if at_once is not None:  # against one at a time: the same asks' sequential figures
        walls = [r["wall_s"] for r in graphql]
        at_once["one_at_a_time"] = {"answers_per_min": round(60 / median(walls), 2), "wall_p50_s": round(median(walls), 2),
                                    "wall_p95_s": round(percentile(walls, 0.95), 2)}
    if not local:
        print(json.dumps({"questions": len(graphql), "settings": settings, "graphql_median": g, "concurrent": at_once,
                          "graphql_rows": graphql, "machine": machine()}))
        return
    loc = med(local)
    paired = [gq["wall_s"] - lq["wall_s"] for gq, lq in zip(graphql, local)]  # same question, back to back
    print(json.dumps({"questions": len(graphql), "settings": settings, "graphql_median": g, "local_median": loc,
                      "graphql_overhead_s": round(g["wall_s"] - loc["wall_s"], 3),
                      "graphql_overhead_paired_median_s": round(median(paired), 3),
                      "graphql_overhead_paired_max_s": round(max(paired), 3), "machine": machine()}))


if __name__ == "__main__":
    main()
