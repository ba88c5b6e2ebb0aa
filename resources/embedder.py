"""The embedder resource: one interface over embedding providers, with a persistent cache."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import dagster as dg
import numpy as np

from rag_assets.hashing import text_hash
from rag_assets.settings import rag_home
from resources import local_embedding
from resources.embedding_cache import EmbeddingCache


def slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")


class EmbedderResource(dg.ConfigurableResource):
    """Embeds texts with the configured model. Default: local all-MiniLM-L6-v2 (offline, CPU or GPU).

    Document embeddings go through a cache keyed by (model, text hash); the model loads only when a
    text is missing from it, so a re-run with nothing changed never loads it.
    """

    provider: Literal["local"] = "local"
    model: str = "all-MiniLM-L6-v2"
    device: str = "auto"  # auto, cpu, cuda, cuda:0, ...
    batch_size: int = 64
    cache_dir: str = ""

    @property
    def model_id(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def dimension(self) -> int:
        return local_embedding.model_dimension(self.model)

    @property
    def max_tokens(self) -> int:
        return local_embedding.model_max_tokens(self.model)

    def tokenizer(self):
        return local_embedding.load_tokenizer(self.model)

    def cache(self) -> EmbeddingCache:
        root = Path(self.cache_dir) if self.cache_dir else rag_home() / "embedding_cache"
        return EmbeddingCache(root / f"{slug(self.model_id)}.sqlite", self.dimension)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed texts now (no cache), L2-normalised float32, in the order given."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = local_embedding.load_sentence_transformer(self.model, self.device)
        vectors = model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        return self.encode(queries)

    def embed_documents(self, texts: list[str], hashes: list[str] | None = None, log=None) -> tuple[np.ndarray, int]:
        """Embed through the cache; returns (vectors in input order, number of texts actually embedded).

        Misses are embedded longest-first in cache-sized batches and written to the cache as each
        batch finishes, so a killed run keeps what it already paid for.
        """
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
