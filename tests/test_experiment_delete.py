"""`rag experiment delete`'s plan: the default variant and storage a remaining variant shares are never deleted."""

from __future__ import annotations

from pathlib import Path

from rag_assets.experiments.delete import plan_deletion
from rag_assets.storage import StorageNames, collection_name
from rag_assets.variants import DEFAULT_SETTINGS, VariantSettings

MODEL = "local/all-MiniLM-L6-v2"


def test_plan_keeps_the_default_and_shared_storage(tmp_path: Path):
    small = VariantSettings(name="small", chunk_max_tokens=128, chunk_overlap=16)
    small_rrf = VariantSettings(name="small-rrf", chunk_max_tokens=128, chunk_overlap=16, fusion="rrf")  # shares small's index
    int8 = VariantSettings(name="int8", embedding_model="all-MiniLM-L6-v2-int8")
    rrf = VariantSettings(name="rrf", fusion="rrf")  # shares the default's index
    registry = {v.name: v for v in (DEFAULT_SETTINGS, small, small_rrf, int8, rrf)}
    assets, cache = tmp_path / "assets", tmp_path / "cache"
    for v in registry.values():
        for asset in ("documents", "chunks", "embeddings"):
            path = StorageNames("docs", v.ingest_key()).parquet(assets, asset)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
        if v.ingest_key():
            (cache / v.ingest_key()).mkdir(parents=True, exist_ok=True)
    collections = sorted({collection_name(MODEL, v.ingest_key()) for v in registry.values()} | {"schema__x"})

    # Deleting an experiment of default, small, int8 and rrf while small-rrf stays registered:
    plan = plan_deletion([DEFAULT_SETTINGS, small, int8, rrf], registry, assets, cache, collections)
    assert plan.variants == ["int8", "rrf", "small"]  # never `default`
    assert plan.ingest_keys == {int8.ingest_key()}  # small's storage is still used by small-rrf; rrf's is the default's
    assert sorted(p.name for p in plan.files) == [f"docs@{int8.ingest_key()}.parquet"] * 3
    assert plan.cache_dirs == [cache / int8.ingest_key()]
    assert plan.collections == [collection_name(MODEL, int8.ingest_key())]
    assert "schema__x" not in plan.collections and collection_name(MODEL) not in plan.collections

    # A name that was never registered (a typo in the file) deletes nothing.
    assert plan_deletion([VariantSettings(name="smal")], registry, assets, cache, collections).variants == []
