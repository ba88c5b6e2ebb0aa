"""Four variants at once vs one after another: `rag experiment run experiments/demo.yaml` on a fresh `rag dev`
stack with `--concurrency 4`, then on another fresh stack with `--concurrency 1` (fresh stacks: no cache or
index left by the other mode). Prints one JSON object: wall seconds of each and their ratio.

    python bench/experiment_concurrency.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, median  # noqa: E402
from rag_assets.devserver import DevStack, free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RAG = Path(sys.executable).parent / "rag"
RUNS = '{ runsOrError(filter: {pipelineName: "ingest"}) { ... on Runs { results { status } } } }'


def fresh_stack(root: Path) -> DevStack:
    project = root / "project"
    project.mkdir(parents=True)
    (project / "docs").symlink_to(REPO / "docs")
    (project / "README.md").symlink_to(REPO / "README.md")
    sources = project / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [{"name": "rag-assets-docs", "kind": "markdown", "paths": ["docs", "README.md"]}]}))
    return DevStack(root, free_port(), free_port(), sources, REPO / "workspace.yaml", log_dir=root / "logs")


def wait_for_default(stack: DevStack, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = httpx.post(f"{stack.url}/graphql", json={"query": RUNS}, timeout=10).json()["data"]["runsOrError"]["results"]
        if runs and runs[0]["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            if runs[0]["status"] != "SUCCESS":
                raise SystemExit(f"the sensor's ingest run ended {runs[0]['status']}; logs in {stack.home / 'logs'}")
            return
        time.sleep(2)
    raise SystemExit("the sensor's ingest run did not finish")


def one(concurrency: int) -> float:
    with tempfile.TemporaryDirectory(prefix="rag-bench-exp-") as tmp:
        stack = fresh_stack(Path(tmp))
        try:
            stack.start(timeout_s=240)
            wait_for_default(stack)
            started = time.perf_counter()
            proc = subprocess.run([str(RAG), "experiment", "run", str(REPO / "experiments" / "demo.yaml"), "--quiet",
                                   "--concurrency", str(concurrency), "--url", stack.url],
                                  capture_output=True, text=True, env=stack.environment(), cwd=str(REPO))
            seconds = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(f"experiment failed (concurrency {concurrency}):\n{proc.stderr[-3000:]}")
            return seconds
        finally:
            stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    at_once, in_turn = [], []
    for _ in range(args.repeat):
        at_once.append(one(4))
        in_turn.append(one(1))
    print(json.dumps({
        "benchmark": "experiment_concurrency", "machine": machine(), "variants": 4, "source": "rag-assets-docs",
        "concurrent_s": [round(s, 1) for s in at_once], "sequential_s": [round(s, 1) for s in in_turn],
        "ratio_concurrent_vs_sequential": round(median(at_once) / median(in_turn), 3),
    }))
