"""Retrieval evaluation on BEIR-format datasets, through the same assets and retrieval function."""
