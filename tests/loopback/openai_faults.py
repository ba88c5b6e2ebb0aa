"""Loopback OpenAI-compatible server with a programmable fault script.

A loopback server implementing the request/response shapes from OpenAI's public REST
reference (`POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`),
used because the real service cannot be reached from tests. It records every request,
so it doubles as an "external provider" for checks that nothing secret leaves the process.

Fault script: a queue of behaviours, one consumed per request (then "ok" forever):

* ``"ok"`` — a normal answer;
* ``("status", 429, {"Retry-After": "1"})`` / ``("status", 500)`` — that status with an
  OpenAI-shaped error body and the optional extra headers;
* ``("hang", seconds)`` — sleep before answering normally, so a client timeout fires;
* ``("malformed",)`` — 200 with a body that is not valid JSON;
* ``("bad_shape",)`` — 200 with valid JSON that lacks ``choices`` / ``data``.
"""

from __future__ import annotations

import base64
import collections
import itertools
import struct
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Union

from .base import (
    LoopbackServer,
    RecordedRequest,
    Reply,
    echo_answer,
    fake_embedding,
    json_reply,
    pieces,
    sse_reply,
    word_count,
)

Behaviour = Union[str, tuple[Any, ...]]
Responder = Callable[[str], str]

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "unknown_url"),
    429: ("requests", "rate_limit_exceeded"),
}


def openai_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    """An error reply in OpenAI's shape: {"error": {message, type, param, code}}."""
    err_type, code = _ERROR_TYPES.get(status, ("server_error", None))
    body = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
    return json_reply(status, body, headers)


def prompt_of_messages(messages: Iterable[Mapping[str, Any]]) -> str:
    """The chat messages' text contents joined by newlines (content parts flattened)."""
    texts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p.get("text", "") for p in content if isinstance(p, Mapping))
    return "\n".join(texts)


def _base64_floats(vector: list[float]) -> str:
    """Little-endian float32 bytes, base64-encoded, as OpenAI sends for encoding_format=base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _usage(prompt: str, answer: str) -> dict[str, int]:
    p, c = word_count(prompt), word_count(answer)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class OpenAIFaultServer(LoopbackServer):
    """An OpenAI-compatible loopback server driven by a fault script.

    Args:
        script: behaviours consumed one per request (see the module docstring).
        responder: ``prompt_text -> answer``; defaults to `echo_answer`.
        embedding_dim: length of the fake embedding vectors.
        api_key: when set, requests must carry ``Authorization: Bearer <api_key>`` (else 401).
    """

    def __init__(
        self,
        script: Iterable[Behaviour] = (),
        *,
        responder: Responder = echo_answer,
        embedding_dim: int = 8,
        api_key: str | None = None,
    ) -> None:
        super().__init__()
        self.responder = responder
        self.embedding_dim = embedding_dim
        self.api_key = api_key
        self._script: collections.deque[Behaviour] = collections.deque(script)
        self._script_lock = threading.Lock()
        self._ids = itertools.count(1)

    def push(self, *behaviours: Behaviour) -> None:
        """Append behaviours to the fault script."""
        with self._script_lock:
            self._script.extend(behaviours)

    def _next_behaviour(self) -> tuple[Any, ...]:
        with self._script_lock:
            behaviour = self._script.popleft() if self._script else "ok"
        return (behaviour,) if isinstance(behaviour, str) else tuple(behaviour)

    # --- dispatch -----------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return openai_error(401, "Incorrect API key provided.")
        kind, *args = self._next_behaviour()
        if kind == "status":
            status, headers = args[0], (args[1] if len(args) > 1 else {})
            return openai_error(status, f"loopback fault: status {status}", headers)
        if kind == "malformed":
            return Reply(200, b'{"id": "chatcmpl-broken", "choices": [')
        if kind == "bad_shape":
            return json_reply(200, {"id": "loopback-bad-shape", "object": "unexpected"})
        if kind == "hang":
            self.sleep(float(args[0]))
        elif kind != "ok":
            raise ValueError(f"unknown fault behaviour: {kind!r}")
        return self._answer(request)

    def _answer(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or not isinstance(request.body, dict):
            return openai_error(400, "Expected a POST with a JSON object body.")
        route = request.path.split("?", 1)[0].rstrip("/")
        if route.endswith("/chat/completions"):
            reply = self._chat(request.body)
            return self._streamed(reply, request.body) if request.body.get("stream") else json_reply(200, reply)
        if route.endswith("/completions"):
            reply = self._completion(request.body)
            return self._streamed(reply, request.body) if request.body.get("stream") else json_reply(200, reply)
        if route.endswith("/embeddings"):
            return json_reply(200, self._embeddings(request.body))
        return openai_error(404, f"Invalid URL (POST {route})")

    # --- endpoints ----------------------------------------------------------------------------
    def _envelope(self, prefix: str, obj: str, model: str) -> dict[str, Any]:
        return {"id": f"{prefix}-loopback-{next(self._ids)}", "object": obj,
                "created": int(time.time()), "model": model}

    def _chat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        prompt = prompt_of_messages(body.get("messages", []))
        answer = self.responder(prompt)
        return {
            **self._envelope("chatcmpl", "chat.completion", body.get("model", "")),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": _usage(prompt, answer),
        }

    def _completion(self, body: Mapping[str, Any]) -> dict[str, Any]:
        raw = body.get("prompt", "")
        prompt = raw if isinstance(raw, str) else "\n".join(map(str, raw))
        answer = self.responder(prompt)
        return {
            **self._envelope("cmpl", "text_completion", body.get("model", "")),
            "choices": [{"text": answer, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": _usage(prompt, answer),
        }

    def _streamed(self, reply: dict[str, Any], body: Mapping[str, Any]) -> Reply:
        """`reply` as OpenAI streams it: chunks of a few words, then (if asked with `stream_options.include_usage`)
        a chunk with no choices and the usage, then `[DONE]`."""
        chat = reply["object"] == "chat.completion"
        choice = reply["choices"][0]
        text = choice["message"]["content"] if chat else choice["text"]
        head = {k: reply[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk" if chat else "text_completion"}
        events = [{**head, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None} if chat
                                       else {"index": 0, "text": piece, "finish_reason": None, "logprobs": None}]}
                  for piece in pieces(text)]
        events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"} if chat
                                           else {"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**head, "choices": [], "usage": reply["usage"]})
        return sse_reply(events, done=True)

    def _embeddings(self, body: Mapping[str, Any]) -> dict[str, Any]:
        raw = body.get("input", [])
        texts = [raw] if isinstance(raw, str) else [str(t) for t in raw]
        tokens = sum(word_count(t) for t in texts)
        as_base64 = body.get("encoding_format") == "base64"  # the SDK asks for this by default
        dim = int(body.get("dimensions") or self.embedding_dim)
        vectors = [fake_embedding(t, dim) for t in texts]
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i,
                      "embedding": _base64_floats(v) if as_base64 else v}
                     for i, v in enumerate(vectors)],
            "model": body.get("model", ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
