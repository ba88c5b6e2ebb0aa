"""End to end on a real `rag dev` stack (Milvus Lite server, `dagster dev`, GraphQL): the shipped experiment's
four variants (two chunk sizes x two embedding models) launched at once by `rag experiment run`, evaluated,
compared; the default variant's collection and answers unchanged by it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import polars as pl
import pytest
import yaml

from rag_assets import client
from rag_assets.devserver import DevStack, free_port
from rag_assets.index_store import ids_for_source
from rag_assets.storage import stored_partitions
from resources.milvus import milvus_client

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RAG = Path(sys.executable).parent / "rag"
SOURCE = "rag-assets-docs"
EXPERIMENT = REPO / "experiments" / "demo.yaml"
RUNS = '{ runsOrError(filter: {pipelineName: "ingest"}) { ... on Runs { results { runId status } } } }'
EVALUATIONS = """{ assetOrError(assetKey: {path: ["evaluation"]}) { ... on Asset {
  assetMaterializations(limit: 50) { partition runOrError { ... on Run { runId tags { key value } } } } } } }"""
QUESTION = "How do I remove a source and everything derived from it?"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory):
    """A stack whose sources.yaml sits next to `docs` and `README.md` (links to the repo's), as in the project:
    the documents' locators are `docs/...` and `README.md`, the keys of the shipped labeled set."""
    home = tmp_path_factory.mktemp("experiments_home")
    project = home / "project"
    project.mkdir()
    (project / "docs").symlink_to(REPO / "docs")
    (project / "README.md").symlink_to(REPO / "README.md")
    sources = project / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [{"name": SOURCE, "kind": "markdown", "paths": ["docs", "README.md"]}]}))
    stack = DevStack(home, free_port(), free_port(), sources, REPO / "workspace.yaml", log_dir=home / "logs")
    try:
        stack.start(timeout_s=240)
        deadline, status = time.monotonic() + 600, None
        while time.monotonic() < deadline and status not in ("SUCCESS", "FAILURE", "CANCELED"):
            runs = httpx.post(f"{stack.url}/graphql", json={"query": RUNS}, timeout=10).json()["data"]["runsOrError"]["results"]
            status = runs[0]["status"] if runs else None
            time.sleep(2)
        assert status == "SUCCESS", f"the sensor's ingest run: {status}; logs in {home / 'logs'}"
        yield stack
    finally:
        stack.stop()


def collection_ids(stack: DevStack) -> dict[str, set[str]]:
    """Each chunk collection's ids, through the project's own client (`milvus_client`): its keepalive settings keep an
    idle channel from being closed by milvus-lite ("too_many_pings") during the experiment's minutes."""
    milvus = milvus_client(stack.milvus_uri)
    return {name: ids_for_source(milvus, name, SOURCE) for name in milvus.list_collections() if name.startswith("chunks__")}


def rag(stack: DevStack, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([str(RAG), *args, "--url", stack.url], capture_output=True, text=True, timeout=timeout,
                          env=stack.environment(), cwd=str(REPO))


def test_four_variants_at_once_are_built_evaluated_compared_and_leave_the_default_alone(dev: DevStack):
    before_ids = collection_ids(dev)
    assert list(before_ids) == ["chunks__local_all_minilm_l6_v2"]
    # Dense retrieval: the `auto` hybrid's weight keeps learning from every question asked (by design), so only a
    # dense search shows that the default collection and model answer exactly as before.
    before = client.ask(QUESTION, url=dev.url, timeout_s=600, n_rephrasings=1, max_tokens=48, mode="dense")

    started = time.perf_counter()
    proc = rag(dev, "experiment", "run", str(EXPERIMENT), "--concurrency", "4")
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for variant in ("default", "c128-minilm", "c256-int8", "c128-int8"):
        assert f"[{variant}]" in proc.stderr  # progress per variant on stderr

    # Four collections, each holding exactly its variant's chunks.
    after_ids = collection_ids(dev)
    assert len(after_ids) == 4, sorted(after_ids)
    chunk_files = stored_partitions(dev.home / "assets", "chunks")
    assert {n.source for n in chunk_files} == {SOURCE} and len(chunk_files) == 3 + 1  # default + three other settings
    counts = sorted(pl.read_parquet(p).height for p in chunk_files.values())
    assert sorted(len(ids) for ids in after_ids.values()) == counts
    assert after_ids["chunks__local_all_minilm_l6_v2"] == before_ids["chunks__local_all_minilm_l6_v2"]

    # Four evaluation materializations, one per variant, tagged with the experiment and the variant.
    data = httpx.post(f"{dev.url}/graphql", json={"query": EVALUATIONS}, timeout=30).json()["data"]["assetOrError"]
    tagged = {}
    for mat in data["assetMaterializations"]:
        tags = {t["key"]: t["value"] for t in mat["runOrError"]["tags"]}
        if tags.get("experiment") == "demo-chunking-models":
            tagged[tags["variant"]] = mat["partition"]
    assert tagged == {v: f"{SOURCE}|{v}" for v in ("default", "c128-minilm", "c256-int8", "c128-int8")}

    # The comparison, read back from the instance's history over GraphQL.
    compare = rag(dev, "experiment", "compare", "demo-chunking-models", "--json", timeout=120)
    assert compare.returncode == 0, compare.stderr[-2000:]
    table = json.loads(compare.stdout)
    rows = table["rows"]
    assert sorted(r["variant"] for r in rows) == ["c128-int8", "c128-minilm", "c256-int8", "default"]
    assert all(0 < r["ndcg@10"] <= 1 and r["recall@100"] > 0 and r["latency_p50_ms"] > 0 for r in rows)
    assert len({(r["ndcg@10"], r["mrr@10"], r["latency_p50_ms"], r["collection"]) for r in rows}) == 4
    assert all(set(r["data_versions"]) == {"documents", "chunks", "embeddings", "index"} for r in rows)
    assert sum(bool(r.get("best")) for r in rows) == 1
    print(f"experiment wall {wall:.1f} s; " + "; ".join(f"{r['variant']}: nDCG@10 {r['ndcg@10']}" for r in rows))

    # The default variant answers from the same chunks as before (the LLM's wording is not what an experiment
    # could change).
    after = client.ask(QUESTION, url=dev.url, timeout_s=600, n_rephrasings=1, max_tokens=48, mode="dense")
    assert [s["chunk_id"] for s in after["sources"]] == [s["chunk_id"] for s in before["sources"]]
    assert after["answer"].strip()

    # Deleting the experiment: a plan first, then the variants and what only they stored; the default stays.
    dry = rag(dev, "experiment", "delete", str(EXPERIMENT), timeout=120)
    assert dry.returncode == 0 and "nothing deleted" in dry.stderr and len(collection_ids(dev)) == 4
    gone = rag(dev, "experiment", "delete", str(EXPERIMENT), "--yes", timeout=120)
    assert gone.returncode == 0, gone.stderr[-2000:]
    assert collection_ids(dev) == {"chunks__local_all_minilm_l6_v2": before_ids["chunks__local_all_minilm_l6_v2"]}
    assert [n.ingest_key for n in stored_partitions(dev.home / "assets", "chunks")] == [""]
    left = json.loads(rag(dev, "experiment", "compare", "demo-chunking-models", "--json", timeout=120).stdout)
    assert [r["variant"] for r in left["rows"]] == ["default"]
