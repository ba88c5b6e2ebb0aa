"""Shared helpers for benchmarks: timing, medians, machine description, SciFact location."""

from __future__ import annotations

import os
import platform
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

SCIFACT = Path(os.environ.get("RAG_SCIFACT", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"))


@contextmanager
def timer(out: list[float]):
    start = time.perf_counter()
    yield
    out.append(time.perf_counter() - start)


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return f"{platform.system()} {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__} ({'cuda' if torch.cuda.is_available() else 'cpu'})"


def require_scifact() -> Path:
    if not (SCIFACT / "corpus.jsonl").exists():
        raise SystemExit(f"SciFact not found at {SCIFACT}; set RAG_SCIFACT")
    return SCIFACT
