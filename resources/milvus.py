"""The Milvus resource: a server URI (production, `milvus-lite server` in dev) or a Milvus Lite file (tests)."""

from __future__ import annotations

import threading

import dagster as dg
from pymilvus import MilvusClient

from rag_assets.settings import default_milvus_uri

_CLIENTS: dict[tuple[str, str], MilvusClient] = {}
_LOCK = threading.Lock()


def milvus_client(uri: str, token: str = "") -> MilvusClient:
    """One client per (uri, token) per process: a Milvus Lite file may be opened by one client only."""
    key = (uri, token)
    with _LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = MilvusClient(uri=uri, token=token) if token else MilvusClient(uri=uri)
        return _CLIENTS[key]


class MilvusResource(dg.ConfigurableResource):
    """`uri`: http://host:19530 for a server, or a `.db` path for in-process Milvus Lite.

    Defaults to `$RAG_MILVUS_URI`, else `$RAG_HOME/milvus.db`.
    """

    uri: str = ""
    token: str = ""

    @property
    def resolved_uri(self) -> str:
        return self.uri or default_milvus_uri()

    def client(self) -> MilvusClient:
        return milvus_client(self.resolved_uri, self.token)
