"""A GGUF's matrices widened to F16 (token embeddings to Q8_0), for reading prompts faster on CPUs.

The bundled Gemma 3 270M ships as Q4_K_M: most of its matrices are Q5_0 and Q4_K (640 columns do not fill K-quant
blocks of 256). llama.cpp multiplies those with activations rounded to 8 bits, one dot product at a time; F16
matrices go through its tiled F16 kernels instead. On a 2-core AVX2 CPU that read a 700-token prompt in 1.48 s
against 2.07 s (`bench/llm_weights.py`). Each widened weight is the value the bundled file
decodes to, rounded to f16: at most 2^-12 of it, far below the 4- and 5-bit quantization's own error.
The token embeddings (the output matrix too: Gemma ties them) stay Q8_0, as bundled: at F16 they would double the
memory read for every generated token.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path


def widen_gguf(source: Path, target: Path) -> Path:
    """Write `source` with F16 matrices and Q8_0 token embeddings to `target` (once: an existing `target` is kept).

    Written under a temporary name and renamed, so a killed conversion leaves no partial file and two processes
    converting at once both end with a whole one."""
    if target.exists():
        return target
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    params.token_embedding_type = params.output_tensor_type = llama_cpp.GGML_TYPE_Q8_0
    params.allow_requantize = True  # the source is quantized already; each tensor is decoded, then re-encoded
    params.nthread = 0  # every core
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    quiet = logging.getLogger("llama-cpp-python")  # llama-cpp-python's log callback prints per tensor below ERROR
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
        if code != 0:
            raise RuntimeError(f"llama.cpp could not widen {source} (code {code})")
        os.replace(partial, target)
    finally:
        quiet.setLevel(level)
        partial.unlink(missing_ok=True)
    return target
