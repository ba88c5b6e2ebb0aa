"""`embedding_model` and `llm_model`: per variant, which model it uses, where the weights came from, their hash.

Their data versions are the weights' hashes, and `embeddings` depends on `embedding_model` of its variant:
switching a variant's model (or the configured default) marks that variant's embeddings and index stale.
"""


import dagster as dg

from rag_assets.hashing import sha256_hex
from rag_assets.ingest.partitions import variants_partitions
from rag_assets.ingest.variant_embedder import model_of
from rag_assets.ingest.versions import CODE_VERSIONS
from rag_assets.variants import get_variant
from resources.embedder import EmbedderResource
from resources.llm import LLMResource

ON_NEW_VARIANT = dg.AutomationCondition.on_missing()


def _card_result(card: dict) -> dg.MaterializeResult:
    version = card.get("weights_sha256") or sha256_hex(*(f"{k}={v}" for k, v in sorted(card.items())))
    metadata = {k: (dg.MetadataValue.path(v) if k == "weights_path" and v else v) for k, v in card.items() if v is not None}
    return dg.MaterializeResult(data_version=dg.DataVersion(version[:24]), metadata=metadata)


def embedding_card(embedder: EmbedderResource) -> dict:
    """The card of the embedder's model: weights and their hash for a bundled model, the endpoint for an API."""
    if embedder.provider == "local":
        from rag_assets.models.cards import embedding_model_card

        return {"provider": "local", **embedding_model_card(embedder.model)}
    return {"provider": embedder.provider, "name": embedder.model, "revision": embedder.model, "endpoint": embedder.base_url or "vendor API",
            "origin": f"{embedder.provider} API", "external": embedder.is_external}


@dg.asset(
    partitions_def=variants_partitions,
    group_name="models",
    kinds={"python"},
    code_version=CODE_VERSIONS["embedding_model"],
    automation_condition=ON_NEW_VARIANT,
    description="The embedding model a variant uses: name, revision, sha256 of the weights, dimension, where the "
    "weights came from. Its data version is the weights' hash: a new model marks the variant's embeddings stale.",
)
def embedding_model(context: dg.AssetExecutionContext, embedder: EmbedderResource) -> dg.MaterializeResult:
    variant = get_variant(context.partition_key)
    return _card_result({"variant": variant.name, **embedding_card(model_of(embedder, variant))})


@dg.asset(
    partitions_def=variants_partitions,
    group_name="models",
    kinds={"python"},
    code_version=CODE_VERSIONS["llm_model"],
    automation_condition=ON_NEW_VARIANT,
    description="The LLM a variant answers with: the bundled local model's card (revision, sha256 of the GGUF, "
    "context length), or the provider it pins.",
)
def llm_model(context: dg.AssetExecutionContext, llm: LLMResource) -> dg.MaterializeResult:
    variant = get_variant(context.partition_key)
    provider = variant.llm_provider or "local"
    if provider == "local":
        from rag_assets.models.cards import llm_model_card

        card = {"provider": "local", **llm_model_card()}
    else:
        card = {"provider": provider, "name": provider, "origin": f"{provider} API (chosen per call by the routing policy's tiers)"}
    return _card_result({"variant": variant.name, "routing": "pinned" if variant.llm_provider else "policy", **card})
