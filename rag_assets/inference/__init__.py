"""Inference as Dagster runs: multi-query RAG (and later the SQL assistant)."""
