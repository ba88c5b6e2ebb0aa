"""llama.cpp's thread count: one core left to the rest of the platform unless RAG_LLM_THREADS says otherwise."""

import os

import pytest

from rag_assets.llm import local_model
from rag_assets.model_servers import llm_spec


@pytest.mark.parametrize("cores, expected", [({0}, 1), ({0, 1}, 1), ({0, 1, 2, 3}, 3)])
def test_one_core_is_left_for_the_runs_and_servers_beside_the_model(monkeypatch, cores, expected):
    monkeypatch.delenv(local_model.LLM_THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    assert local_model.llm_threads() == expected


def test_the_setting_overrides_and_a_bad_value_is_ignored(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setenv(local_model.LLM_THREADS_ENV, "2")
    assert local_model.llm_threads() == 2
    monkeypatch.setenv(local_model.LLM_THREADS_ENV, "zero")
    assert local_model.llm_threads() == 3


def test_the_model_server_computes_with_those_threads(monkeypatch):
    monkeypatch.setenv(local_model.LLM_THREADS_ENV, "3")
    command = llm_spec().command(8000)
    assert command[command.index("--n_threads") + 1] == "3" and command[command.index("--n_threads_batch") + 1] == "3"


def test_the_model_server_keeps_no_logits_of_prompt_tokens():
    """llama-cpp-python's server keeps every prompt token's logits by default (262k of them per token for Gemma 3),
    which made reading a prompt 2.7x slower; nothing asks it for logprobs."""
    command = llm_spec().command(8000)
    assert command[command.index("--logits_all") + 1] == "false"
