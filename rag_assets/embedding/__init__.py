"""Embedding models behind one `Embedder`: the bundled local models, provider SDKs, and a persistent cache.

Same shape as `rag_assets.llm`: the logic lives here; `resources.embedder.EmbedderResource` is the thin
Dagster resource that holds the settings.
"""
