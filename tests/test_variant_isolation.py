"""Variants of one source: different ingestion settings never share a Parquet file, cache entry or collection;
variants that differ only in retrieval share the index instead of rebuilding it; the default keeps its names."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polars as pl
import pytest

from rag_assets.index_store import ids_for_source
from rag_assets.pipeline import Workspace
from rag_assets.storage import StorageNames, collection_name, names_for, stored_partitions
from rag_assets.variants import DEFAULT_SETTINGS, VariantError, VariantSettings, get_variant, register, unregister

DOC = "# Notes\n\n" + "\n\n".join(f"## Part {i}\n\n" + " ".join(f"word{i}_{j} topic{j % 7}" for j in range(120)) for i in range(6))


def cache_keys(folder: Path) -> set[tuple[str, str]]:
    """(cache file, text hash) of every entry under `folder` (every model, every ingestion setting)."""
    keys = set()
    for path in folder.rglob("*.sqlite"):
        with sqlite3.connect(path) as conn:
            keys.update((str(path.relative_to(folder)), h) for (h,) in conn.execute("SELECT text_hash FROM vectors"))
    return keys


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "variants.yaml"
    monkeypatch.setenv("RAG_VARIANTS", str(path))
    return path


def test_registry_refuses_changed_settings_and_keeps_the_default(registry: Path):
    small = VariantSettings(name="small", chunk_max_tokens=128, chunk_overlap=16)
    assert register([small]) == ["small"] and register([small]) == []  # idempotent
    assert get_variant("small") == small and get_variant("default") == DEFAULT_SETTINGS
    with pytest.raises(VariantError, match="other settings .*chunk_max_tokens"):
        register([VariantSettings(name="small", chunk_max_tokens=64, chunk_overlap=16)])
    with pytest.raises(VariantError, match="not registered"):
        get_variant("typo")
    with pytest.raises(ValueError, match="chunk_overlap"):
        VariantSettings(name="bad", chunk_max_tokens=32, chunk_overlap=32)
    assert unregister(["small", "default"]) == ["small"] and get_variant("default") == DEFAULT_SETTINGS


def test_storage_names_keep_the_default_layout_and_separate_other_settings(tmp_path: Path):
    retrieval_only = VariantSettings(name="rrf", fusion="rrf", top_k=8)
    small = VariantSettings(name="small", chunk_max_tokens=128, chunk_overlap=16)
    other_model = VariantSettings(name="int8", embedding_model="all-MiniLM-L6-v2-int8")
    assert names_for("docs", DEFAULT_SETTINGS).parquet(tmp_path, "chunks") == tmp_path / "chunks" / "docs.parquet"
    assert names_for("docs", retrieval_only) == names_for("docs", DEFAULT_SETTINGS)
    assert len({names_for("docs", v).ingest_key for v in (DEFAULT_SETTINGS, small, other_model)}) == 3
    assert names_for("docs", small).collection("local/all-MiniLM-L6-v2") != collection_name("local/all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="unsafe"):
        StorageNames("../x", "").parquet(tmp_path, "chunks")


@pytest.mark.slow
def test_two_ingestion_settings_share_nothing_and_a_retrieval_variant_shares_the_index(workspace: Workspace, registry: Path):
    workspace.root.mkdir(parents=True)
    (workspace.root / "notes.md").write_text(DOC, encoding="utf-8")
    workspace.write_sources([{"name": "notes", "kind": "markdown", "paths": ["notes.md"]}])
    small = VariantSettings(name="small", chunk_max_tokens=64, chunk_overlap=8)
    rrf = VariantSettings(name="rrf", fusion="rrf")
    register([small, rrf])
    cache = workspace.cache_dir

    default = workspace.materialize("notes")
    before_small = cache_keys(cache)
    small_report = workspace.materialize("notes", variant="small")
    shared = workspace.materialize("notes", variant="rrf")

    root = workspace.root / "assets"
    files = {asset: stored_partitions(root, asset) for asset in ("documents", "chunks", "embeddings")}
    for asset, stored in files.items():
        assert set(stored) == {StorageNames("notes", ""), StorageNames("notes", small.ingest_key())}, asset
    chunks = {n.ingest_key: pl.read_parquet(p) for n, p in files["chunks"].items()}
    assert chunks[small.ingest_key()].height > chunks[""].height  # smaller chunks, more of them

    collections = (default.metadata["index"]["collection"], small_report.metadata["index"]["collection"])
    assert collections[0] != collections[1] and shared.metadata["index"]["collection"] == collections[0]
    client = workspace.resources()["milvus"].client()
    for key, collection in zip(("", small.ingest_key()), collections):
        assert ids_for_source(client, collection, "notes") == set(chunks[key]["chunk_id"])
    assert shared.metadata["embeddings"]["embedded_now"] == 0  # the retrieval-only variant rebuilt nothing

    # Every vector the small variant used sits in its own cache file (a text both settings produce is cached twice,
    # once per setting, never shared); the default's cache file gained nothing from it.
    small_entries = cache_keys(cache) - before_small
    assert {h for _, h in small_entries} == set(chunks[small.ingest_key()]["text_hash"])
    assert all(f.startswith(small.ingest_key() + "/") for f, _ in small_entries)
