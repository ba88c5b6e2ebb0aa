"""Loopback Google Gemini API (Generative Language API v1beta) server.

A loopback server implementing the request/response shapes from Google's public Gemini
REST reference (`models.generateContent`, `models.embedContent`,
`models.batchEmbedContents`), used because the real service cannot be reached from tests.

Routes (``{model}`` may be ``gemini-2.5-flash`` or ``models/gemini-2.5-flash`` style):

* ``POST /v1beta/models/{model}:generateContent`` — ``contents`` [{role, parts: [{text}]}],
  optional ``systemInstruction`` and ``generationConfig`` {maxOutputTokens, temperature,
  stopSequences}; answers ``candidates``, ``usageMetadata`` and ``modelVersion``;
* ``POST /v1beta/models/{model}:embedContent`` — ``content`` {parts: [{text}]}, optional
  ``outputDimensionality`` → ``{"embedding": {"values": [...]}}``;
* ``POST /v1beta/models/{model}:batchEmbedContents`` — ``requests`` [{model, content}] →
  ``{"embeddings": [{"values": [...]}]}``.

Every request must carry ``x-goog-api-key`` (401 ``UNAUTHENTICATED`` otherwise). Token counts
are whitespace word counts; embeddings are deterministic, hash-seeded and L2-normalised.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Callable, Iterable, Mapping

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

Responder = Callable[[str], str]

_ROUTE = re.compile(r"^/(?P<version>v1beta|v1)/(?:models/)?(?P<model>[^:/]+):(?P<method>[A-Za-z]+)$")
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND"}


def google_error(code: int, message: str) -> Reply:
    """An error reply in Google's shape: {"error": {code, message, status}}."""
    return json_reply(code, {"error": {"code": code, "message": message,
                                       "status": _STATUS_NAMES.get(code, "INTERNAL")}})


def parts_text(content: Mapping[str, Any] | None) -> str:
    """The text parts of one `Content` joined by newlines."""
    parts = (content or {}).get("parts") or []
    return "\n".join(p["text"] for p in parts if isinstance(p, Mapping) and "text" in p)


def prompt_of_contents(contents: Iterable[Mapping[str, Any]]) -> str:
    """The text of all `contents` joined by newlines."""
    return "\n".join(parts_text(c) for c in contents)


def apply_generation_config(answer: str, config: Mapping[str, Any]) -> tuple[str, str]:
    """Cut `answer` at the first stop sequence and at maxOutputTokens words; also return finishReason."""
    for stop in config.get("stopSequences") or []:
        if stop and stop in answer:
            answer = answer[: answer.index(stop)]
    limit = config.get("maxOutputTokens")
    words = answer.split()
    if limit is not None and len(words) > int(limit):
        return " ".join(words[: int(limit)]), "MAX_TOKENS"
    return answer, "STOP"


class GeminiServer(LoopbackServer):
    """A Gemini API loopback server.

    Args:
        responder: ``prompt_text -> answer`` for generateContent; defaults to `echo_answer`.
        embedding_dim: length of the fake embedding vectors.
        api_key: when set, ``x-goog-api-key`` must equal it; otherwise any non-empty key passes.
    """

    def __init__(
        self,
        *,
        responder: Responder = echo_answer,
        embedding_dim: int = 8,
        api_key: str | None = None,
    ) -> None:
        super().__init__()
        self.responder = responder
        self.embedding_dim = embedding_dim
        self.api_key = api_key
        self._ids = itertools.count(1)

    def handle(self, request: RecordedRequest) -> Reply:
        key = request.headers.get("x-goog-api-key")
        if not key or (self.api_key is not None and key != self.api_key):
            return google_error(401, "Method doesn't allow unregistered callers (callers without "
                                     "established identity). Please use API Key or other form of "
                                     "API consumer identity to call this API.")
        match = _ROUTE.match(request.path.split("?", 1)[0])
        if request.method != "POST" or match is None:
            return google_error(404, f"Unknown route: {request.method} {request.path}")
        if not isinstance(request.body, dict):
            return google_error(400, "Invalid JSON payload received.")
        model, method = match["model"], match["method"]
        if method == "generateContent":
            return json_reply(200, self._generate(model, request.body))
        if method == "streamGenerateContent":  # the SDK asks for `?alt=sse`: one GenerateContentResponse per event
            whole = self._generate(model, request.body)
            candidate = whole["candidates"][0]
            texts = pieces(candidate["content"]["parts"][0]["text"])
            events = [{"candidates": [{"content": {"role": "model", "parts": [{"text": t}]}, "index": 0}], "modelVersion": model}
                      for t in texts[:-1]]
            events.append({**whole, "candidates": [{**candidate, "content": {"role": "model", "parts": [{"text": texts[-1]}]}}]})
            return sse_reply(events)
        if method == "embedContent":
            return json_reply(200, {"embedding": self._embed(request.body)})
        if method == "batchEmbedContents":
            embeddings = [self._embed(r) for r in request.body.get("requests", [])]
            return json_reply(200, {"embeddings": embeddings})
        return google_error(404, f"Method {method} is not supported by this loopback server.")

    def _generate(self, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
        prompt = prompt_of_contents(body.get("contents", []))
        config = body.get("generationConfig") or {}
        answer, finish = apply_generation_config(self.responder(prompt), config)
        system = parts_text(body.get("systemInstruction"))
        prompt_tokens = word_count(prompt) + word_count(system)
        answer_tokens = word_count(answer)
        return {
            "candidates": [{"content": {"role": "model", "parts": [{"text": answer}]},
                            "finishReason": finish, "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt_tokens,
                              "candidatesTokenCount": answer_tokens,
                              "totalTokenCount": prompt_tokens + answer_tokens},
            "modelVersion": model,
            "responseId": f"loopback-{next(self._ids)}",
        }

    def _embed(self, request: Mapping[str, Any]) -> dict[str, list[float]]:
        """One `EmbedContentRequest` -> `ContentEmbedding` (honours outputDimensionality)."""
        dim = int(request.get("outputDimensionality") or self.embedding_dim)
        return {"values": fake_embedding(parts_text(request.get("content")), dim)}
