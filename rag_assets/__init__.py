"""rag-assets: a Dagster code location for a RAG platform (documents -> chunks -> embeddings -> index)."""
