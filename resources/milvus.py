"""The Milvus resource: a server URI (production, `milvus-lite server` in dev) or a Milvus Lite file (tests)."""

from __future__ import annotations

import threading

import dagster as dg
from pymilvus import MilvusClient

from rag_assets.settings import default_milvus_uri

_CLIENTS: dict[tuple[str, str], MilvusClient] = {}
# pymilvus pings the server every 10 s, between calls too. A gRPC server with default settings, such as
# `milvus-lite server`, allows one ping per 5 minutes without data and answers the third early one with
# GOAWAY "too_many_pings", failing the calls in flight (seen in a purge step and in a long-lived client).
# Milvus itself accepts either; a dead connection still fails the next call.
SERVER_GRPC_OPTIONS = {"grpc.keepalive_time_ms": 600_000, "grpc.keepalive_permit_without_calls": False}
_LOCK = threading.Lock()


def milvus_client(uri: str, token: str = "") -> MilvusClient:
    """One client per (uri, token) per process: a Milvus Lite file may be opened by one client only."""
    key = (uri, token)
    with _LOCK:
        if key not in _CLIENTS:
            options = {"grpc_options": SERVER_GRPC_OPTIONS} if "://" in uri else {}
            _CLIENTS[key] = MilvusClient(uri=uri, token=token, **options) if token else MilvusClient(uri=uri, **options)
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
