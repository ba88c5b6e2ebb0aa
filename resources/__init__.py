"""Dagster resources: embedder, Milvus, sources registry."""

from resources.embedder import EmbedderResource
from resources.milvus import MilvusResource
from resources.sources import SourcesResource

__all__ = ["EmbedderResource", "MilvusResource", "SourcesResource"]
