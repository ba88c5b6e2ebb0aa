"""Provider-agnostic LLM calls: a routing policy (tiers of candidates), providers, retries, accounting."""
