"""One interface over the embedding providers, with a persistent cache of document vectors."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag_assets.embedding import bundled, remote
from rag_assets.embedding.cache import EmbeddingCache
from rag_assets.hashing import text_hash
from rag_assets.llm.types import SensitiveDataError
from rag_assets.settings import rag_home

SERVER_URL_ENV = "RAG_EMBEDDER_URL"
log = logging.getLogger(__name__)


def slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")


class ServerUnavailable(Exception):
    """The embedding server cannot serve this call (down, or not serving the model): embed in-process."""


def server_encode(url: str, model: str, texts: list[str], query: bool, dimension: int, timeout_s: float = 120.0) -> np.ndarray:
    """Embed on an embedding server (`rag_assets.embedding.server`); `ServerUnavailable` if it cannot."""
    import httpx

    from rag_assets.embedding.server import decode_vectors

    body = {"model": model, "input": texts, "encoding_format": "base64", "input_type": "query" if query else "passage"}
    try:
        response = httpx.post(f"{url.rstrip('/')}/v1/embeddings", json=body, timeout=timeout_s)
    except httpx.TransportError as exc:
        raise ServerUnavailable(f"{url}: {exc}") from exc
    if response.status_code != 200:
        raise ServerUnavailable(f"{url}: HTTP {response.status_code} {response.text[:200]}")
    return decode_vectors(response.json()["data"], dimension)


@lru_cache(maxsize=8)
def _probed_dimension(provider: str, model: str, base_url: str, api_key: str) -> int:
    embed = remote.openai_embed if provider == "openai" else remote.gemini_embed
    return int(embed(["dimension probe"], model, api_key, base_url).shape[1])


@dataclass(frozen=True)
class Embedder:
    """Embeds texts with one model: `local` (bundled, offline), `openai` or `gemini` (their SDKs).

    Document embeddings go through a cache keyed by (model, text hash); the model loads only when a
    text is missing from it, so a re-run with nothing changed never loads it.
    """

    provider: str = "local"
    model: str = "all-MiniLM-L6-v2"
    device: str = "auto"
    batch_size: int = 64
    cache_dir: str = ""
    base_url: str = ""
    api_key: str = ""
    dimension_override: int | None = None
    external: bool | None = None
    chunk_tokens: int = 512
    server_url: str = ""  # local: an embedding server already holding the model (default: $RAG_EMBEDDER_URL)
    # local sentence-transformers models: auto (bf16 on a CPU with native bf16), fp32, bf16. The cache does not tell
    # them apart: like a GPU's vectors against a CPU's, bf16 vectors are the same model's (cosine >= 0.9999 to fp32).
    precision: str = "auto"

    @property
    def model_id(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def is_external(self) -> bool:
        """A remote provider is external unless declared `external: false` together with its in-house `base_url`
        (without one the SDK calls the vendor's API)."""
        if self.provider == "local":
            return False
        return not (self.external is False and self.base_url)

    @property
    def dimension(self) -> int:
        if self.provider == "local":
            return bundled.model_dimension(self.model)
        return self.dimension_override or _probed_dimension(self.provider, self.model, self.base_url, self.api_key)

    @property
    def max_tokens(self) -> int:
        return bundled.model_max_tokens(self.model) if self.provider == "local" else self.chunk_tokens

    def tokenizer(self):
        """The tokenizer that sizes chunks: the local model's own; for remote models, the bundled one as a proxy."""
        return bundled.load_tokenizer(self.model if self.provider == "local" else "all-MiniLM-L6-v2")

    def check_sensitivity(self, sensitive: bool) -> None:
        if sensitive and self.is_external:
            raise SensitiveDataError(
                f"sensitive data cannot be embedded by the external provider {self.model_id}; "
                "use a local embedder (provider local, or an in-house endpoint with external: false)"
            )

    @property
    def cache_root(self) -> Path:
        """The folder of the cache files, one per model and endpoint."""
        return Path(self.cache_dir) if self.cache_dir else rag_home() / "embedding_cache"

    def cache(self) -> EmbeddingCache:
        endpoint = f"_{slug(self.base_url)}" if self.base_url else ""
        return EmbeddingCache(self.cache_root / f"{slug(self.model_id)}{endpoint}.sqlite", self.dimension)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed texts (documents) now (no cache), L2-normalised float32, in the order given."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.provider == "openai":
            return remote.openai_embed(texts, self.model, self.api_key, self.base_url)
        if self.provider == "gemini":
            return remote.gemini_embed(texts, self.model, self.api_key, self.base_url)
        return self._local(texts, query=False)

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        """Embed search queries now: as `encode`, with the query prefix for a local model that needs one (e5)."""
        if self.provider == "local" and queries:
            return self._local(queries, query=True)
        return self.encode(queries)

    def _local(self, texts: list[str], query: bool) -> np.ndarray:
        """A bundled model: on the embedding server when one serves it (no model load in this process), else here."""
        url = self.server_url or os.environ.get(SERVER_URL_ENV, "")
        if url:
            try:
                return server_encode(url, self.model, texts, query, self.dimension)
            except ServerUnavailable as exc:
                log.warning("embedding server not used, embedding in this process: %s", exc)
        return bundled.encode(self.model, texts, self.device, self.batch_size, query=query, precision=self.precision)

    def embed_documents(self, texts: list[str], hashes: list[str] | None = None, log=None,
                        sensitive: bool = False) -> tuple[np.ndarray, int]:
        """Embed through the cache; returns (vectors in input order, number of texts actually embedded).

        Misses are embedded longest-first in cache-sized batches and written to the cache as each
        batch finishes, so a killed run keeps what it already paid for.
        """
        self.check_sensitivity(sensitive)
        hashes = hashes or [text_hash(t) for t in texts]
        cache = self.cache()
        try:
            found = cache.get_many(hashes)
            missing: dict[str, str] = {}
            for h, t in zip(hashes, texts):
                if h not in found and h not in missing:
                    missing[h] = t
            order = sorted(missing, key=lambda h: len(missing[h]), reverse=True)
            step = max(self.batch_size * 16, 256)
            for start in range(0, len(order), step):
                keys = order[start : start + step]
                vectors = self.encode([missing[k] for k in keys])
                cache.put_many(keys, vectors)
                found.update(zip(keys, vectors))
                if log is not None:
                    log.info(f"embedded {min(start + step, len(order))}/{len(order)} new texts")
        finally:
            cache.close()
        if not hashes:
            return np.zeros((0, self.dimension), dtype=np.float32), 0
        return np.stack([found[h] for h in hashes]).astype(np.float32), len(missing)


