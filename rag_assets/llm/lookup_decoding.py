"""Prompt-lookup decoding for the local model: draft tokens copied from the prompt, checked in one decode.

An answer repeats its sources' phrases and a rewrite its question's words. When the last tokens generated also occur
earlier in the text, the tokens that followed them there are proposed as the next ones, and the model checks them all
in one decode. On a CPU a small model's decode is bound by reading its weights (Gemma 3 270M: 235 MB a token, three
quarters of it the 262k-token output matrix); one read serves every drafted position, though each still costs its row
of the output matrix (`LookupDrafts` sizes the drafts for that). Every token is still the model's own choice (a draft
token is kept only where the sampled token equals it); batched arithmetic may round a near-tie differently, as
reading a prompt in batches of another size may.

llama-cpp-python takes a draft model but then computes logits for every prompt token (`logits_all`): with Gemma 3's
vocabulary that makes reading a prompt about 2.7x slower. `install_lookup_decoding` keeps logits only where the
sampler reads them (and refuses `logprobs`, as without a draft model).
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


class LookupDrafts:
    """Draft lengths that follow how many drafted tokens the model kept: checking a drafted token is not free (the
    bundled model on 2 cores: one token 25 ms, 3 at once 35 ms, 5 53 ms, 11 82 ms; the output matrix is computed for
    each), so the length starts at 2, doubles after a draft kept whole (text copied at length, or a loop) up to
    `limit`, and drops to what was kept plus one after a miss. `pending` is the length of the draft being checked."""

    def __init__(self, limit: int, start: int = 2):
        self.limit, self.length, self.pending = limit, min(start, limit), 0
        self._proposed: np.ndarray | None = None
        self._at = 0

    def propose(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        if self._proposed is not None and len(ids) > self._at:
            got = ids[self._at:self._at + len(self._proposed)]
            kept = int(np.argmin(np.append(got == self._proposed[:len(got)], False)))
            self.length = min(self.limit, self.length * 2) if kept == len(self._proposed) else min(self.limit, kept + 1)
        draft = find_draft(ids, self.length)
        self._proposed, self._at = (draft, len(ids)) if len(draft) else (None, 0)
        self.pending = len(draft)
        return draft


def draft_model(n: int | None = None):
    """A llama-cpp-python draft model proposing `find_draft`'s tokens (at most `n`, default `draft_tokens()`, at a
    length `LookupDrafts` adapts), or None when `n` is 0."""
    from llama_cpp.llama_speculative import LlamaDraftModel

    n = draft_tokens() if n is None else n
    if n <= 0:
        return None

    class PromptLookup(LlamaDraftModel):
        def __init__(self, num_pred_tokens: int = n, **_: object):
            self.num_pred_tokens = num_pred_tokens
            self.drafts = LookupDrafts(num_pred_tokens)

        def __call__(self, input_ids, /, **kwargs):
            return self.drafts.propose(input_ids).astype(np.intc)

    return PromptLookup(n)


def keep_tail_logits(llm) -> None:
    """Make `llm` (a `llama_cpp.Llama` with a `draft_model` from `draft_model`) compute logits only where its sampler
    reads them: the last position of a batch, and every position of a drafted continuation."""
    llm._logits_all = False  # llama-cpp-python forces it on with a draft model; nothing here reads prompt logits
    target, drafts = llm._batch, getattr(llm.draft_model, "drafts", None)
    set_batch = target.set_batch

    def set_tail(batch: list[int], n_past: int, logits_all: bool) -> None:  # the names llama-cpp-python calls it with
        set_batch(batch=batch, n_past=n_past, logits_all=False)
        keep = 1 + (drafts.pending if drafts is not None else int(getattr(llm.draft_model, "num_pred_tokens", 10)))
        if drafts is not None:
            drafts.pending = 0  # a prompt read next (a new call) needs its last position only
        for i in range(max(0, len(batch) - keep), len(batch)):
            target.batch.logits[i] = True

    target.set_batch = set_tail


def install_lookup_decoding() -> None:
    """Make every `llama_cpp.Llama` created with a draft model (and without `logits_all=True`) keep only the logits
    its sampler reads, and decode without drafts under a grammar. Idempotent."""
    import llama_cpp

    init = llama_cpp.Llama.__init__
    if getattr(init, "_rag_lookup", False):
        return

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.draft_model is not None and not kwargs.get("logits_all", False):
            keep_tail_logits(self)

    wrapped._rag_lookup = True
    llama_cpp.Llama.__init__ = wrapped

    generate = llama_cpp.Llama.generate

    @functools.wraps(generate)
    def generate_without_drafts_under_a_grammar(self, tokens, *args, **kwargs):
        """llama-cpp-python's drafts and a grammar do not mix (the bundled model cut SQL off mid-literal under the SQL
        grammar with drafts on): a constrained call decodes token by token, as does one with logits processors or
        stopping criteria (they read the logits of every position, which are not kept)."""
        if self.draft_model is None or all(kwargs.get(k) is None for k in ("grammar", "logits_processor", "stopping_criteria")):
            return (yield from generate(self, tokens, *args, **kwargs))
        draft, self.draft_model = self.draft_model, None  # one call at a time per context (the callers hold a lock)
        try:
            return (yield from generate(self, tokens, *args, **kwargs))
        finally:
            self.draft_model = draft

    llama_cpp.Llama.generate = generate_without_drafts_under_a_grammar
