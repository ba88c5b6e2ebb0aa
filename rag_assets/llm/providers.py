"""Providers behind one `complete` call: local llama.cpp, the `openai` SDK, the `google-genai` SDK.

A call may carry a `Constraint` (a GBNF grammar and/or a JSON schema): each provider enforces the form it
supports (llama.cpp: grammar, else the schema as a grammar; OpenAI chat: structured outputs; OpenAI
completions API: a llama.cpp server's `grammar` field; Gemini: response schema) and raises `CandidateError`
for a constraint it cannot enforce.

With a `stream` (`TextStream`), the text is written to it piece by piece as it is generated (llama.cpp in
process or behind its server, the OpenAI SDK's server-sent events, Gemini's `generate_content_stream`), and
the returned `Completion` holds the whole of it.

Each maps its SDK's failures onto `RetryableError` (429, 5xx, timeout, connection, malformed
output) or `CandidateError` (auth, bad request, unknown model) so the router can retry or fall back.
SDK-level retries are off: the router owns retries.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from types import SimpleNamespace

from rag_assets.llm.types import CandidateError, Completion, Constraint, RetryableError, TextStream

LLM_SERVER_URL_ENV = "RAG_LLM_URL"
LOCAL_SERVER_TIMEOUT_S = 900.0  # a timed-out request keeps the server busy; a retry would queue behind it
log = logging.getLogger(__name__)

DEFAULT_MODELS = {"local": "gemma-3-270m-q4_k_m", "openai": "gpt-4.1-mini", "gemini": "gemini-2.5-flash"}


def _retry_after(headers) -> float | None:
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _unsupported(provider: str, constraint: Constraint) -> CandidateError:
    forms = " and ".join(f for f, v in (("a grammar", constraint.grammar), ("a JSON schema", constraint.json_schema)) if v)
    return CandidateError(f"{provider} cannot enforce {forms}")


@lru_cache(maxsize=32)
def _llama_grammar(grammar: str, json_schema: str):
    """A compiled llama.cpp grammar (GBNF, or a JSON schema converted to GBNF); cached: questions repeat schemas."""
    from llama_cpp import LlamaGrammar

    try:
        return LlamaGrammar.from_string(grammar, verbose=False) if grammar else LlamaGrammar.from_json_schema(json_schema, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise CandidateError(f"local model: invalid constraint: {exc}") from exc


@dataclass
class LocalProvider:
    """Completion-style prompts on the bundled GGUF (a small base model: chat templates are not relied on).

    With `server_url` (default `$RAG_LLM_URL`, which `rag dev` sets) the model is already loaded in a llama.cpp
    OpenAI-compatible server: calls go there (its KV cache keeps a shared prompt prefix between calls), and come
    back to loading the model in this process when the server cannot be reached."""

    model: str
    n_ctx: int = 4096
    model_path: str = ""
    server_url: str = ""

    def complete(self, prompt: str, *, system: str, max_tokens: int, temperature: float, stop: list[str], timeout_s: float,
                 constraint: Constraint | None = None, stream: TextStream | None = None) -> Completion:
        url = self.server_url or os.environ.get(LLM_SERVER_URL_ENV, "")
        if url and (constraint is None or constraint.grammar):
            served = OpenAIProvider(self.model, base_url=f"{url.rstrip('/')}/v1", api="completions")
            try:  # the server answers one call at a time: a call may wait behind others' (in-process calls never time out)
                out = served.complete(prompt, system=system, max_tokens=max_tokens, temperature=temperature, stop=stop,
                                      timeout_s=max(timeout_s, LOCAL_SERVER_TIMEOUT_S), constraint=constraint, stream=stream)
                return replace(out, provider="local", model=self.model)
            except RetryableError as exc:
                if exc.kind != "connection":
                    raise
                log.warning("local model server %s unreachable, loading the model in this process: %s", url, exc)
        return self._complete_here(prompt, system=system, max_tokens=max_tokens, temperature=temperature, stop=stop,
                                   constraint=constraint, stream=stream)

    def _complete_here(self, prompt: str, *, system: str, max_tokens: int, temperature: float, stop: list[str],
                       constraint: Constraint | None, stream: TextStream | None = None) -> Completion:
        from rag_assets.llm.local_model import gguf_path, load_llama

        llm, lock = load_llama(self.model_path or str(gguf_path()), self.n_ctx)
        text = f"{system.strip()}\n\n{prompt}" if system else prompt
        grammar = None
        if constraint is not None:
            grammar = _llama_grammar(constraint.grammar, "" if constraint.grammar else json.dumps(constraint.json_schema))
        started = time.perf_counter()
        with lock:
            try:
                out = llm.create_completion(text, max_tokens=max_tokens, temperature=temperature, stop=stop or None, seed=0, grammar=grammar,
                                            stream=stream is not None)
                if stream is not None:  # one chunk per generated token; the stream carries no usage
                    pieces = []
                    for chunk in out:
                        piece = chunk["choices"][0]["text"]
                        if piece:
                            pieces.append(piece)
                            stream.write(piece)
                    out = {"choices": [{"text": "".join(pieces)}],
                           "usage": {"prompt_tokens": len(llm.tokenize(text.encode("utf-8"))), "completion_tokens": len(pieces)}}
            except ValueError as exc:  # e.g. the prompt exceeds the context window
                raise CandidateError(f"local model: {exc}") from exc
        usage = out.get("usage") or {}
        by = "" if constraint is None else ("grammar" if constraint.grammar else "json_schema")
        return Completion(out["choices"][0]["text"], int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)),
                          time.perf_counter() - started, "local", self.model, by)


@dataclass
class OpenAIProvider:
    """The official `openai` SDK; `base_url` points it at any OpenAI-compatible server (vLLM, Ollama, llama.cpp)."""

    model: str
    api_key: str = ""
    base_url: str = ""
    api: str = "chat"  # "completions" for base models served by an OpenAI-compatible server

    def __post_init__(self) -> None:
        import openai

        self._openai = openai
        self._client = openai.OpenAI(api_key=self.api_key or "unused", base_url=self.base_url or None, max_retries=0)

    def _constrained(self, constraint: Constraint | None) -> tuple[dict, str]:
        """Request arguments enforcing `constraint`, and the form enforced."""
        if constraint is None:
            return {}, ""
        if self.api == "completions":
            if constraint.grammar:  # llama.cpp's server reads a GBNF `grammar` next to the OpenAI fields
                return {"extra_body": {"grammar": constraint.grammar}}, "grammar"
        elif constraint.json_schema:
            return {"response_format": {"type": "json_schema", "json_schema": {
                "name": constraint.name, "schema": constraint.json_schema, "strict": True}}}, "json_schema"
        raise _unsupported(f"openai {self.api} API", constraint)

    @contextmanager
    def _mapped_errors(self, timeout_s: float) -> Iterator[None]:
        """The SDK's failures (on the request or while reading a stream) as `RetryableError` / `CandidateError`."""
        openai = self._openai
        try:
            yield
        except openai.RateLimitError as exc:
            raise RetryableError(f"openai 429: {exc.message}", "rate_limited", _retry_after(exc.response.headers)) from exc
        except openai.APITimeoutError as exc:
            raise RetryableError(f"openai timeout after {timeout_s}s", "timeout") from exc
        except openai.APIConnectionError as exc:
            raise RetryableError(f"openai connection error: {exc}", "connection") from exc
        except openai.APIResponseValidationError as exc:
            raise RetryableError(f"openai malformed response: {exc}", "malformed") from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise RetryableError(f"openai {exc.status_code}", "server_error", _retry_after(exc.response.headers)) from exc
            raise CandidateError(f"openai {exc.status_code}: {exc.message}") from exc
        except (json.JSONDecodeError, ValueError) as exc:
            raise RetryableError(f"openai malformed response: {exc}", "malformed") from exc

    def _read_stream(self, events, stream: TextStream) -> tuple[str | None, int, int]:
        """Text, prompt and completion tokens of a streamed response, each piece written to `stream` as it comes.
        Servers that send no usage (llama.cpp's) get one completion token counted per chunk of text."""
        pieces, tokens_in, tokens_out = [], 0, 0
        for event in events:
            if getattr(event, "usage", None):
                tokens_in, tokens_out = event.usage.prompt_tokens or 0, event.usage.completion_tokens or 0
            for choice in getattr(event, "choices", None) or []:
                piece = choice.text if self.api == "completions" else getattr(choice.delta, "content", None)
                if piece:
                    pieces.append(piece)
                    stream.write(piece)
        return "".join(pieces), tokens_in, tokens_out or len(pieces)

    def complete(self, prompt: str, *, system: str, max_tokens: int, temperature: float, stop: list[str], timeout_s: float,
                 constraint: Constraint | None = None, stream: TextStream | None = None) -> Completion:
        extra, by = self._constrained(constraint)
        if stop:
            extra["stop"] = stop
        if stream is not None:
            extra["stream"] = True
            if self.api == "chat":
                extra["stream_options"] = {"include_usage": True}
        started = time.perf_counter()
        with self._mapped_errors(timeout_s):
            if self.api == "completions":
                text_prompt = f"{system.strip()}\n\n{prompt}" if system else prompt
                resp = self._client.completions.create(
                    model=self.model, prompt=text_prompt, max_tokens=max_tokens, temperature=temperature, timeout=timeout_s, **extra,
                )
            else:
                messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
                resp = self._client.chat.completions.create(
                    model=self.model, messages=messages, max_tokens=max_tokens, temperature=temperature, timeout=timeout_s, **extra,
                )
            if stream is not None:
                text, tokens_in, tokens_out = self._read_stream(resp, stream)
                return Completion(text, tokens_in, tokens_out, time.perf_counter() - started, "openai", self.model, by)
        choices = getattr(resp, "choices", None)
        text = None
        if choices:
            text = choices[0].text if self.api == "completions" else getattr(choices[0].message, "content", None)
        if text is None:
            raise RetryableError("openai malformed response: no choices", "malformed")
        usage = resp.usage
        return Completion(text, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0,
                          time.perf_counter() - started, "openai", self.model, by)


@dataclass
class GeminiProvider:
    """The official `google-genai` SDK (Gemini API); `base_url` points it at another endpoint."""

    model: str
    api_key: str = ""
    base_url: str = ""

    def __post_init__(self) -> None:
        from google import genai
        from google.genai import errors, types

        self._errors, self._types = errors, types
        options = types.HttpOptions(base_url=self.base_url) if self.base_url else None
        self._client = genai.Client(api_key=self.api_key or "unused", http_options=options)

    def complete(self, prompt: str, *, system: str, max_tokens: int, temperature: float, stop: list[str], timeout_s: float,
                 constraint: Constraint | None = None, stream: TextStream | None = None) -> Completion:
        import httpx

        types, errors = self._types, self._errors
        schema = {}
        if constraint is not None:
            if not constraint.json_schema:
                raise _unsupported("gemini", constraint)
            schema = {"response_mime_type": "application/json", "response_json_schema": constraint.json_schema}
        config = types.GenerateContentConfig(
            max_output_tokens=max_tokens, temperature=temperature, stop_sequences=stop or None,
            system_instruction=system or None, http_options=types.HttpOptions(timeout=int(timeout_s * 1000)), **schema,
        )
        started = time.perf_counter()
        try:
            if stream is None:
                resp = self._client.models.generate_content(model=self.model, contents=prompt, config=config)
            else:
                resp = self._read_stream(self._client.models.generate_content_stream(model=self.model, contents=prompt, config=config), stream)
        except errors.ClientError as exc:
            if exc.code == 429:
                raise RetryableError(f"gemini 429: {exc.message}", "rate_limited", _retry_after(getattr(exc.response, "headers", None))) from exc
            raise CandidateError(f"gemini {exc.code}: {exc.message}") from exc
        except errors.ServerError as exc:
            raise RetryableError(f"gemini {exc.code}: {exc.message}", "server_error") from exc
        except httpx.TimeoutException as exc:
            raise RetryableError(f"gemini timeout after {timeout_s}s", "timeout") from exc
        except httpx.TransportError as exc:
            raise RetryableError(f"gemini connection error: {exc}", "connection") from exc
        except (json.JSONDecodeError, ValueError) as exc:
            raise RetryableError(f"gemini malformed response: {exc}", "malformed") from exc
        text = resp.text
        if text is None:
            raise RetryableError("gemini malformed response: no candidate text", "malformed")
        usage = resp.usage_metadata
        return Completion(text, getattr(usage, "prompt_token_count", 0) or 0, getattr(usage, "candidates_token_count", 0) or 0,
                          time.perf_counter() - started, "gemini", self.model, "json_schema" if schema else "")

    @staticmethod
    def _read_stream(chunks, stream: TextStream):
        """The streamed chunks' text written to `stream` as it comes; returns one response-like object (text, last usage)."""
        pieces, usage = [], None
        for chunk in chunks:
            usage = getattr(chunk, "usage_metadata", None) or usage
            if chunk.text:
                pieces.append(chunk.text)
                stream.write(chunk.text)
        return SimpleNamespace(text="".join(pieces), usage_metadata=usage)
