"""A process killed (SIGKILL) while `index` writes to Milvus, then re-run: a complete index, no duplicates.

Uses a real `milvus-lite server` on loopback so the test process can watch the collection while a
second process writes to it.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from rag_assets.index_store import count_for_source, ids_for_source
from rag_assets.storage import collection_name
from rag_assets.ingest.chunks import chunks
from rag_assets.ingest.documents import documents
from rag_assets.ingest.embeddings import embeddings
from rag_assets.pipeline import Workspace
from resources.milvus import milvus_client

pytestmark = pytest.mark.slow
N_DOCS = 600


def test_killed_index_run_resumes_without_duplicates_or_gaps(tmp_path: Path, milvus_server: str, embedding_cache: Path):
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(N_DOCS):
        (folder / f"note-{i:04d}.md").write_text(f"# Note {i}\n\nMeeting note number {i} about topic {i % 17}.\n")
    ws = Workspace(root=tmp_path / "ws", cache_dir=embedding_cache, milvus_uri=milvus_server)
    ws.write_sources([{"name": "notes", "kind": "markdown", "paths": [str(folder)]}])
    ws.materialize("notes", selection=[documents, chunks, embeddings])
    wanted = set(pl.read_parquet(ws.root / "assets" / "chunks" / "notes.parquet")["chunk_id"])
    assert len(wanted) == N_DOCS

    client = milvus_client(milvus_server)
    name = collection_name(ws.resources()["embedder"].model_id)
    env = {**os.environ, "RAG_MILVUS_WRITE_BATCH": "5", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "index_only_driver.py"), str(ws.root), milvus_server, str(embedding_cache), "notes"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "driver.log", "wb"),
    )
    partial = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if client.has_collection(name):
                client.load_collection(name)
                partial = count_for_source(client, name, "notes")
                if partial > 0:
                    break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the writer finished before it could be killed"
    assert 0 < partial < N_DOCS

    report = ws.materialize("notes")
    stored = ids_for_source(client, name, "notes")
    assert stored == wanted
    assert count_for_source(client, name, "notes") == len(wanted)  # no duplicate rows
    assert report.metadata["index"]["inserted"] + report.metadata["index"]["unchanged"] == len(wanted)
    assert report.metadata["index"]["unchanged"] >= partial
    assert report.checks["index:count_matches_chunks"] is True
