"""Model assets: the embedding model, the LLM and the trained ranker, as versioned assets (`cards` describes them)."""
