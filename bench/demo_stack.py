"""A fresh `rag dev` stack over the demo source (this project's docs), for the benchmarks that ask it questions."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from rag_assets.devserver import DevStack, free_port
from rag_assets.model_servers import default_specs

ROOT = Path(__file__).resolve().parents[1]
INGEST_RUNS = '{ runsOrError(filter: {pipelineName: "ingest"}) { ... on Runs { results { status } } } }'


@contextmanager
def demo_stack(model_servers: bool = True) -> Iterator[tuple[DevStack, dict[str, str]]]:
    """(the stack, the environment a `rag` command needs to reach it), once the sensor's ingest run of the demo
    source has ended; the model servers as `rag dev` starts them unless `model_servers` is False. Stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="rag-ask-bench-") as tmp:
        home = Path(tmp)
        sources = home / "sources.yaml"
        sources.write_text(yaml.safe_dump({"sources": [{"name": "rag-assets-docs", "kind": "markdown",
                                                        "paths": [str(ROOT / "docs"), str(ROOT / "README.md")]}]}))
        stack = DevStack(home, free_port(), free_port(), sources, ROOT / "workspace.yaml", log_dir=home / "logs",
                         model_servers=default_specs() if model_servers else None).start(300)
        try:
            while True:
                runs = httpx.post(f"{stack.url}/graphql", json={"query": INGEST_RUNS}, timeout=10).json()["data"]["runsOrError"]["results"]
                if runs and runs[0]["status"] in ("SUCCESS", "FAILURE"):
                    break
                time.sleep(2)
            yield stack, {**os.environ, **{k: v for k, v in stack.environment().items() if k.startswith("RAG_")}}
        finally:
            stack.stop()
