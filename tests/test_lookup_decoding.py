"""Prompt-lookup decoding: drafts from the prompt's n-grams, checked in one decode, with logits only where the
sampler reads them; the bundled model's text unchanged."""

import inspect
import types

import numpy as np
import pytest

from rag_assets.llm import local_model, lookup_decoding
from rag_assets.llm.lookup_decoding import LOOKUP_ENV, find_draft
from rag_assets.model_servers import llm_spec

SOURCE = ("The chunk_id is the hash of the source name, the doc_id, the chunk text with its title prefix and the chunker "
          "settings id. The text_hash is a hash of the chunk text alone; it is the embedding cache key.")
PROMPT = f"Sources:\n[1] Chunks\n{SOURCE}\n\nQuestion: How is the chunk_id computed?\nAnswer: The chunk_id is"


def test_the_draft_is_what_followed_the_latest_earlier_occurrence_of_the_longest_tail():
    ids = np.array([5, 6, 7, 8, 1, 5, 6, 9, 2, 3, 5, 6])
    assert find_draft(ids, 3).tolist() == [9, 2, 3]  # "5 6" last occurred before position 7
    assert find_draft(np.array([1, 2, 3, 4, 9, 2, 3, 4, 1, 2, 3]), 2).tolist() == [4, 9]  # the 3-gram "1 2 3" wins
    assert find_draft(ids, 1).tolist() == [9]


def test_no_draft_without_an_earlier_ngram_of_two_tokens():
    assert find_draft(np.array([1, 2, 3, 4, 3]), 4).tolist() == []  # "4 3" never occurred: a lone "3" proposes nothing
    assert find_draft(np.array([7]), 4).tolist() == [] and find_draft(np.array([], dtype=int), 4).tolist() == []


def test_draft_length_doubles_after_a_draft_kept_whole_and_drops_after_a_miss():
    drafts = lookup_decoding.LookupDrafts(limit=6)
    base = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2]
    assert drafts.propose(np.array(base)).tolist() == [3, 4] and drafts.pending == 2  # starts at 2
    kept_whole = base + [3, 4, 5]  # both kept, then the model's own next token
    assert drafts.propose(np.array(kept_whole)).tolist() == [6, 7, 8, 9] and drafts.length == 4
    missed = kept_whole + [6, 0]  # the first kept, the second not
    assert drafts.propose(np.array(missed)).tolist() == [] and drafts.length == 2 and drafts.pending == 0
    loop = [5, 6, 7] * 6
    for _ in range(4):
        loop += drafts.propose(np.array(loop)).tolist()  # every drafted token kept,
        loop.append(loop[-3])  # then the model's own next one
    assert drafts.length == 6  # capped at the limit


def test_the_setting_counts_draft_tokens_and_rejects_a_typo(monkeypatch):
    monkeypatch.delenv(LOOKUP_ENV, raising=False)
    assert lookup_decoding.draft_tokens() == lookup_decoding.DEFAULT_DRAFT_TOKENS
    monkeypatch.setenv(LOOKUP_ENV, "0")
    assert lookup_decoding.draft_tokens() == 0 and lookup_decoding.draft_model() is None
    monkeypatch.setenv(LOOKUP_ENV, "six")
    with pytest.raises(ValueError, match="RAG_LLM_LOOKUP='six': expected a whole number"):
        lookup_decoding.draft_tokens()


def test_the_model_server_drafts_from_the_prompt_unless_turned_off(monkeypatch):
    monkeypatch.setenv(LOOKUP_ENV, "4")
    command = llm_spec().command(8000)
    assert command[command.index("--draft_model") + 1] == "prompt-lookup-decoding"
    assert command[command.index("--draft_model_num_pred_tokens") + 1] == "4"
    assert command[command.index("--logits_all") + 1] == "false"
    monkeypatch.setenv(LOOKUP_ENV, "0")
    assert "--draft_model" not in llm_spec().command(8000)


def _counting(llm):
    """Count the decodes of `llm` (bypassing any process-wide thread hook)."""
    from llama_cpp import Llama

    bare, calls = inspect.unwrap(Llama.eval), []

    def counted(self, tokens):
        calls.append(len(tokens))
        return bare(self, tokens)

    llm.eval = types.MethodType(counted, llm)
    return calls


def test_the_bundled_model_writes_the_same_answer_in_fewer_decodes():
    from llama_cpp import Llama

    lookup_decoding.install_lookup_decoding()
    path = str(local_model.gguf_path())
    plain = Llama(model_path=path, n_ctx=512, n_threads=2, n_threads_batch=2, seed=0, verbose=False)
    drafted = Llama(model_path=path, n_ctx=512, n_threads=2, n_threads_batch=2, seed=0, verbose=False, draft_model=lookup_decoding.draft_model(6))
    assert drafted._logits_all is False  # llama-cpp-python forces it on with a draft model: every prompt token's logits
    plain_calls, drafted_calls = _counting(plain), _counting(drafted)
    a = plain.create_completion(PROMPT, max_tokens=40, temperature=0, stop=["\n"])
    b = drafted.create_completion(PROMPT, max_tokens=40, temperature=0, stop=["\n"])
    assert a["choices"][0]["text"] == b["choices"][0]["text"] and a["usage"] == b["usage"]
    generated = a["usage"]["completion_tokens"]
    assert generated >= 10 and len(plain_calls) == generated  # the prompt, then one decode per further token
    assert len(drafted_calls) < 0.75 * len(plain_calls) and max(drafted_calls[1:]) > 1  # drafts checked, and kept
    with pytest.raises(ValueError, match="logprobs"):  # not silently made from logits that were never computed
        drafted.create_completion(PROMPT, max_tokens=2, logprobs=1)


def test_logits_stay_off_for_a_context_without_a_draft_model_or_that_asked_for_them():
    from llama_cpp import Llama

    lookup_decoding.install_lookup_decoding()
    path = str(local_model.gguf_path())
    assert Llama(model_path=path, n_ctx=256, n_threads=1, verbose=False)._logits_all is False
    both = Llama(model_path=path, n_ctx=256, n_threads=1, verbose=False, logits_all=True, draft_model=lookup_decoding.draft_model(4))
    assert both._logits_all is True  # asked for: left as llama-cpp-python makes it
    out = both.create_completion("The capital of France is", max_tokens=3, temperature=0, logprobs=1)
    assert len(out["choices"][0]["logprobs"]["tokens"]) == 3


def test_a_grammar_constrained_call_decodes_without_drafts():
    """Drafts under llama-cpp-python's grammar cut the bundled model's SQL off mid-literal (tests/test_sql_grammar.py):
    a constrained call decodes token by token, and the next unconstrained call drafts again."""
    from llama_cpp import Llama, LlamaGrammar

    lookup_decoding.install_lookup_decoding()
    drafted = Llama(model_path=str(local_model.gguf_path()), n_ctx=512, n_threads=2, seed=0, verbose=False,
                    draft_model=lookup_decoding.draft_model(6))
    calls = []
    propose = drafted.draft_model.drafts.propose
    drafted.draft_model.drafts.propose = lambda ids: calls.append(len(ids)) or propose(ids)
    grammar = LlamaGrammar.from_string('root ::= "chunk_id " [a-z ]+ "."', verbose=False)
    out = drafted.create_completion(PROMPT, max_tokens=24, temperature=0, grammar=grammar)
    assert out["choices"][0]["text"].startswith("chunk_id ") and calls == [] and drafted.draft_model is not None
    drafted.create_completion(PROMPT, max_tokens=12, temperature=0, stop=["\n"])
    assert calls  # drafting again
