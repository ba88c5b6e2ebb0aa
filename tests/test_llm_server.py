"""The bundled LLM served by llama.cpp's OpenAI-compatible server: calls go there; without it they load in-process."""

from __future__ import annotations

import os

import pytest

from rag_assets.devserver import free_port
from rag_assets.llm import local_model
from rag_assets.llm.providers import LocalProvider
from rag_assets.llm.types import Constraint
from rag_assets.model_servers import ServerProcess, llm_spec

pytestmark = pytest.mark.slow
ARGS = {"system": "Answer briefly.", "max_tokens": 8, "temperature": 0.0, "stop": ["\n"], "timeout_s": 120}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(llm_spec(), free_port(), dict(os.environ), tmp_path_factory.mktemp("llm") / "llm-server.log")
    proc.start()
    try:
        proc.wait_healthy(180)
        yield proc
    finally:
        proc.stop()
    assert not proc.healthy()


def test_calls_go_to_the_server_and_no_model_loads_here(server: ServerProcess, monkeypatch: pytest.MonkeyPatch):
    def refuse(*_):
        raise AssertionError("the model was loaded in this process although a server holds it")

    monkeypatch.setattr(local_model, "load_llama", refuse)
    out = LocalProvider(local_model.LOCAL_MODEL, server_url=server.url).complete("The capital of France is", **ARGS)
    assert out.provider == "local" and out.tokens_out > 0 and out.text.strip()
    digits = Constraint(grammar='root ::= [0-9] [0-9] [0-9]')
    constrained = LocalProvider(local_model.LOCAL_MODEL, server_url=server.url).complete("Pick a number:", **{**ARGS, "stop": []},
                                                                                         constraint=digits)
    assert constrained.text.isdigit() and len(constrained.text) == 3 and constrained.constrained_by == "grammar"


def test_an_unreachable_server_falls_back_to_loading_the_model_here():
    dead = f"http://127.0.0.1:{free_port()}"
    out = LocalProvider(local_model.LOCAL_MODEL, server_url=dead).complete("The capital of France is", **ARGS)
    here = LocalProvider(local_model.LOCAL_MODEL).complete("The capital of France is", **ARGS)
    assert out.text == here.text and out.provider == "local"


class Pieces:
    def __init__(self) -> None:
        self.pieces: list[str] = []

    def write(self, text: str) -> None:
        self.pieces.append(text)

    def restart(self) -> None:
        self.pieces = []


def test_the_answer_streams_token_by_token_from_the_server_and_in_process(server: ServerProcess):
    """Each piece arrives as generated and the pieces make up the returned text. (The streamed and the whole text
    are not compared: llama.cpp reuses the previous call's prompt cache, which can flip a near-tie of greedy decoding.)"""
    args = {**ARGS, "max_tokens": 24, "stop": []}
    prompt = "Write one sentence about rivers:"
    local_pieces, served_pieces = Pieces(), Pieces()
    streamed_here = LocalProvider(local_model.LOCAL_MODEL).complete(prompt, **args, stream=local_pieces)
    streamed_served = LocalProvider(local_model.LOCAL_MODEL, server_url=server.url).complete(prompt, **args, stream=served_pieces)
    for out, sink in ((streamed_here, local_pieces), (streamed_served, served_pieces)):
        assert out.text.strip() and out.text == "".join(sink.pieces)
        assert len(sink.pieces) > 5 and out.tokens_out == len(sink.pieces)
    assert streamed_here.tokens_in > 3


def test_the_server_checks_draft_tokens_copied_from_the_prompt(server: ServerProcess):
    """`--draft_model prompt-lookup-decoding` builds the project's draft model (n-grams of two tokens or more, logits
    only where the sampler reads them), not llama-cpp-python's, which would keep every prompt token's logits."""
    source = "The text_hash is a hash of the chunk text alone; it is the embedding cache key."
    out = LocalProvider(local_model.LOCAL_MODEL, server_url=server.url).complete(
        f"Source: {source}\nQuestion: What is the text_hash?\nAnswer: The text_hash is", **{**ARGS, "max_tokens": 16})
    assert out.text.strip() and out.provider == "local"
    assert "prompt-lookup decoding: up to 10 draft tokens a decode" in server.log.read_text(errors="replace")
