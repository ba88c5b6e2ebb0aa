"""Prompt-lookup decoding for the local model: draft tokens copied from the prompt, checked in one decode.

An answer repeats its sources' phrases and a rewrite its question's words. When the last tokens generated also occur
earlier in the text, the tokens that followed them there are proposed as the next ones, and the model checks them all
in one decode. On a CPU a small model's decode is bound by reading its weights (Gemma 3 270M: 235 MB a token, three
quarters of it the 262k-token output matrix), and one read serves every drafted position: each accepted draft token
comes nearly free. Every token is still the model's own choice (a draft token is kept only where the sampled token
equals it); batched arithmetic may round a near-tie differently, as reading a prompt in batches of another size may.

llama-cpp-python takes a draft model but then computes logits for every prompt token (`logits_all`): with Gemma 3's
vocabulary that makes reading a prompt about 2.7x slower. `install_lookup_decoding` keeps logits only for the last
`num_pred_tokens + 1` positions of each batch, which is all its sampler reads (and refuses `logprobs`, as without a
draft model).
"""

from __future__ import annotations

import functools
import os

import numpy as np

LOOKUP_ENV = "RAG_LLM_LOOKUP"  # draft tokens per decode; 0 turns prompt-lookup decoding off
DEFAULT_DRAFT_TOKENS = 10
MIN_NGRAM, MAX_NGRAM = 2, 4  # a one-token match ("the", ",") proposes noise more often than text


def draft_tokens() -> int:
    """Draft tokens per decode from `$RAG_LLM_LOOKUP` (default `DEFAULT_DRAFT_TOKENS`; 0: off)."""
    raw = os.environ.get(LOOKUP_ENV, "").strip()
    if not raw:
        return DEFAULT_DRAFT_TOKENS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 64:
        raise ValueError(f"{LOOKUP_ENV}={raw!r}: expected a whole number of draft tokens from 0 (off) to 64")
    return value


def find_draft(ids: np.ndarray, n: int, min_ngram: int = MIN_NGRAM, max_ngram: int = MAX_NGRAM) -> np.ndarray:
    """Up to `n` tokens that followed the latest earlier occurrence of the longest tail of `ids` (`max_ngram` down to
    `min_ngram` tokens long); empty when no such tail occurs before."""
    ids = np.asarray(ids)
    for size in range(min(max_ngram, len(ids) - 1), min_ngram - 1, -1):
        windows = np.lib.stride_tricks.sliding_window_view(ids[:-1], size)
        found = np.flatnonzero((windows == ids[-size:]).all(axis=1))
        if len(found):
            start = int(found[-1]) + size
            return ids[start:start + n]
    return ids[:0]


def draft_model(n: int | None = None):
    """A llama-cpp-python draft model proposing `find_draft`'s tokens, or None when `n` (default `draft_tokens()`) is 0."""
    from llama_cpp.llama_speculative import LlamaDraftModel

    n = draft_tokens() if n is None else n
    if n <= 0:
        return None

    class PromptLookup(LlamaDraftModel):
        def __init__(self, num_pred_tokens: int = n, **_: object):
            self.num_pred_tokens = num_pred_tokens

        def __call__(self, input_ids, /, **kwargs):
            return find_draft(input_ids, self.num_pred_tokens).astype(np.intc)

    return PromptLookup(n)


def keep_tail_logits(llm, keep: int) -> None:
    """Make `llm` (a `llama_cpp.Llama`) compute logits only for the last `keep` positions of each batch it decodes."""
    llm._logits_all = False  # llama-cpp-python forces it on with a draft model; nothing here reads prompt logits
    target = llm._batch
    set_batch = target.set_batch

    def set_tail(batch: list[int], n_past: int, logits_all: bool) -> None:  # the names llama-cpp-python calls it with
        set_batch(batch=batch, n_past=n_past, logits_all=False)
        for i in range(max(0, len(batch) - keep), len(batch)):
            target.batch.logits[i] = True

    target.set_batch = set_tail


def install_lookup_decoding() -> None:
    """Make every `llama_cpp.Llama` created with a draft model (and without `logits_all=True`) keep only the logits
    its sampler reads. Idempotent."""
    import llama_cpp

    init = llama_cpp.Llama.__init__
    if getattr(init, "_rag_lookup", False):
        return

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.draft_model is not None and not kwargs.get("logits_all", False):
            keep_tail_logits(self, int(getattr(self.draft_model, "num_pred_tokens", 10)) + 1)

    wrapped._rag_lookup = True
    llama_cpp.Llama.__init__ = wrapped
