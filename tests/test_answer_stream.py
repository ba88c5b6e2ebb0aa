"""Streaming an answer: the pieces a provider streams reach the run log in order, batched, and restart on a retry;
the provider SDKs stream from servers speaking their wire protocol (server-sent events)."""

from __future__ import annotations

import pytest

from loopback.gemini import GeminiServer
from loopback.openai_faults import OpenAIFaultServer
from rag_assets.inference.answer_stream import ANSWER_DELTA, RunLogStream, parse_delta
from rag_assets.llm.policy import Policy
from rag_assets.llm.providers import GeminiProvider, OpenAIProvider
from rag_assets.llm.router import Router
from rag_assets.llm.types import Completion, RetryableError

ANSWER = "Assets are materialized by runs and each run writes its own partition of the index [1]."


class Collect:
    """A `TextStream` that keeps what it is given."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.restarts = 0

    def write(self, text: str) -> None:
        self.pieces.append(text)

    def restart(self) -> None:
        self.restarts += 1
        self.pieces = []


def rebuild(messages: list[str]) -> str:
    """What a client shows: the deltas in `seq` order, the text before the last restart dropped."""
    text = ""
    for delta in sorted(filter(None, map(parse_delta, messages)), key=lambda d: d.seq):
        text = "" if delta.restart else text + delta.text
    return text


def test_the_first_piece_goes_out_at_once_and_the_rest_in_batches():
    now = [0.0]
    logged: list[str] = []
    stream = RunLogStream(logged.append, flush_s=0.2, clock=lambda: now[0])
    for i, word in enumerate(ANSWER.split(" ")):
        now[0] = 1.0 + 0.05 * i  # a word every 50 ms, after a second of prompt processing
        stream.write(word if i == 0 else " " + word)
        if i == 0:
            assert logged and parse_delta(logged[0]).text == "Assets"  # not held back for the batch
    stream.close()
    assert rebuild(logged) == ANSWER
    assert 3 < len(logged) < len(ANSWER.split(" "))  # batched, yet more than one message
    assert stream.first_piece_s == pytest.approx(1.0)
    assert [parse_delta(m).seq for m in logged] == list(range(len(logged)))
    assert parse_delta("a plain log line") is None and parse_delta(ANSWER_DELTA + "{not json") is None


def test_a_restart_voids_the_text_written_before_it():
    logged: list[str] = []
    stream = RunLogStream(logged.append, flush_s=0.0)
    stream.write("The wrong beginning")
    stream.restart()
    stream.write(ANSWER)
    stream.close()
    assert rebuild(logged) == ANSWER
    assert any(parse_delta(m).restart for m in logged)


class HalfThenFails:
    """A provider whose first call streams half an answer and then drops the connection."""

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, prompt, *, system, max_tokens, temperature, stop, timeout_s, stream=None):
        self.calls += 1
        if self.calls == 1:
            stream.write("Half an ans")
            raise RetryableError("connection reset while streaming", "connection")
        for word in ANSWER.split(" "):
            stream.write(word + " ")
        return Completion(" ".join(ANSWER.split(" ")) + " ", 10, 20, 0.1, "local", "m")


def test_the_router_restarts_the_stream_when_a_streaming_call_fails_and_is_retried():
    policy = Policy.model_validate({"tiers": {"strong": [{"name": "local", "provider": "local", "model": "m"}]},
                                   "retry": {"max_attempts": 2, "backoff_s": 0, "max_backoff_s": 0, "timeout_s": 5}})
    provider = HalfThenFails()
    router = Router(policy, lambda c: provider, sleep=lambda s: None)
    sink = Collect()
    out = router.complete("strong", "q", stream=sink)
    assert provider.calls == 2 and sink.restarts == 1
    assert "".join(sink.pieces) == out.text and "Half" not in out.text


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_the_openai_sdk_streams_server_sent_events(api: str):
    with OpenAIFaultServer(responder=lambda prompt: ANSWER) as server:
        provider = OpenAIProvider("gpt-test", api_key="k", base_url=server.base_url, api=api)
        args = dict(system="Be brief.", max_tokens=64, temperature=0.0, stop=[], timeout_s=10)
        whole = provider.complete("What do assets do?", **args)
        sink = Collect()
        streamed = provider.complete("What do assets do?", **args, stream=sink)
        sent = server.requests.snapshot()[-1]
    assert streamed.text == whole.text == ANSWER and "".join(sink.pieces) == ANSWER and len(sink.pieces) > 3
    assert sent.body["stream"] is True
    if api == "chat":  # usage comes in the stream's last chunk when asked for
        assert sent.body["stream_options"] == {"include_usage": True}
        assert (streamed.tokens_in, streamed.tokens_out) == (whole.tokens_in, whole.tokens_out)
    else:  # llama.cpp's server sends no usage in a stream: one token counted per chunk
        assert streamed.tokens_out == len(sink.pieces)


def test_the_gemini_sdk_streams_server_sent_events():
    with GeminiServer(responder=lambda prompt: ANSWER) as server:
        provider = GeminiProvider("gemini-2.5-flash", api_key="k", base_url=server.base_url)
        sink = Collect()
        out = provider.complete("What do assets do?", system="", max_tokens=64, temperature=0.0, stop=[], timeout_s=10, stream=sink)
        sent = server.requests.snapshot()[-1]
    assert sent.path.split("?")[0].endswith("/models/gemini-2.5-flash:streamGenerateContent")
    assert out.text == ANSWER == "".join(sink.pieces) and len(sink.pieces) > 3
    assert out.tokens_out > 0 and out.tokens_in > 0  # usage from the last event
