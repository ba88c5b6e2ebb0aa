"""Where the platform keeps its files (one root, `$RAG_HOME`, default `./.rag`) and what this process may use."""

from __future__ import annotations

import os
from pathlib import Path


def rag_home() -> Path:
    return Path(os.environ.get("RAG_HOME", ".rag")).resolve()


def default_milvus_uri() -> str:
    """`$RAG_MILVUS_URI` (a server such as http://127.0.0.1:19530) or a Milvus Lite file under RAG_HOME."""
    return os.environ.get("RAG_MILVUS_URI") or str(rag_home() / "milvus.db")


def available_cores() -> int:
    """The cores this process may run on (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
