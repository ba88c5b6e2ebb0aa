"""The embedder a variant uses: the configured one, or the variant's model, with its own cache folder."""

from __future__ import annotations

import os

from rag_assets.storage import StorageNames
from rag_assets.variants import VariantSettings
from resources.embedder import EmbedderResource

CARRIED = ("device", "batch_size", "dimension_override", "external", "chunk_tokens", "precision")


def model_of(base: EmbedderResource, variant: VariantSettings, cache_dir: str | None = None) -> EmbedderResource:
    """`base` if the variant keeps the configured model; else a copy with the variant's model (`name` for a
    bundled local model, `provider/name` for another provider's)."""
    if not variant.embedding_model and cache_dir is None:
        return base
    provider, model = base.provider, base.model
    if variant.embedding_model:
        provider, _, model = variant.embedding_model.rpartition("/")
        provider = provider or "local"
    same_endpoint = provider == base.provider
    return EmbedderResource(
        provider=provider, model=model, cache_dir=cache_dir if cache_dir is not None else base.cache_dir,
        base_url=base.base_url if same_endpoint else "",
        # another provider than the configured one: its key from the environment (OPENAI_API_KEY, GEMINI_API_KEY)
        api_key=base.api_key if same_endpoint else os.environ.get(f"{provider.upper()}_API_KEY", ""),
        **{k: getattr(base, k) for k in CARRIED},
    )


def embedder_for(base: EmbedderResource, variant: VariantSettings, names: StorageNames) -> EmbedderResource:
    """The variant's embedder, caching under the variant's storage names (unchanged for the default settings)."""
    if not names.ingest_key:
        return base
    return model_of(base, variant, cache_dir=str(names.cache_dir(base.cache_root)))
