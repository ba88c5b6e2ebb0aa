"""The ingestion assets: documents -> chunks -> embeddings -> index, one dynamic partition per source."""
