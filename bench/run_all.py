"""Run every benchmark in turn (each prints one JSON line). Slow: the SciFact ingestion embeds ~10k chunks twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["chunker_vs_langchain.py", "ingest_scifact.py", "eval_scifact.py", "fusion_corpora.py", "llm_local.py", "llm_weights.py", "llm_overhead.py",
           "ask_latency.py", "ask_quality.py", "sql_eval.py"]

if __name__ == "__main__":
    failed = 0
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / script), *sys.argv[1:]]) != 0
    raise SystemExit(failed)
