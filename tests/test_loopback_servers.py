"""The official `openai` and `google-genai` SDKs against the loopback provider servers.

These prove the loopback servers speak the real wire protocols, and pin down which
exception each SDK raises for each fault, so provider code can be tested offline.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from loopback.gemini import GeminiServer
from loopback.openai_faults import OpenAIFaultServer

openai = pytest.importorskip("openai")
genai = pytest.importorskip("google.genai")
genai_types = pytest.importorskip("google.genai.types")
genai_errors = pytest.importorskip("google.genai.errors")

TIMEOUT_S = 0.5
MESSAGES = [{"role": "user", "content": "What does the loopback server do?"}]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both SDKs honour proxy variables; loopback traffic must go straight to 127.0.0.1."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


# --- openai -----------------------------------------------------------------------------------
@pytest.fixture
def oai_server() -> Iterator[OpenAIFaultServer]:
    with OpenAIFaultServer() as server:
        yield server


def oai_client(server: OpenAIFaultServer, *, strict: bool = False) -> "openai.OpenAI":
    return openai.OpenAI(
        base_url=server.base_url + "/v1", api_key="test", max_retries=0, timeout=TIMEOUT_S,
        _strict_response_validation=strict,
    )


def chat(client: "openai.OpenAI"):  # type: ignore[no-untyped-def]
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]


def test_openai_chat_completion_with_usage(oai_server: OpenAIFaultServer) -> None:
    completion = chat(oai_client(oai_server, strict=True))
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.role == "assistant"
    assert "loopback server do?" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.prompt_tokens == 6
    assert completion.usage.total_tokens == 6 + completion.usage.completion_tokens
    [recorded] = oai_server.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["authorization"] == "Bearer test"
    assert recorded.body["messages"] == MESSAGES


def test_openai_legacy_completion(oai_server: OpenAIFaultServer) -> None:
    completion = oai_client(oai_server, strict=True).completions.create(
        model="gpt-3.5-turbo-instruct", prompt="say hi"
    )
    assert completion.object == "text_completion"
    assert completion.choices[0].text.endswith("say hi") and completion.usage.prompt_tokens == 2
    assert oai_server.requests[0].path == "/v1/completions"


def test_openai_embeddings_base64_and_float(oai_server: OpenAIFaultServer) -> None:
    """The SDK asks for `encoding_format="base64"` unless told otherwise and decodes it after
    parsing (so strict validation, which sees the base64 string, cannot be used here)."""
    client = oai_client(oai_server)
    emb = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    floats = client.embeddings.create(model="text-embedding-3-small", input="a", encoding_format="float")
    assert oai_server.requests[0].body["encoding_format"] == "base64"
    assert [d.index for d in emb.data] == [0, 1] and len(emb.data[0].embedding) == 8
    assert emb.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)
    assert sum(v * v for v in emb.data[1].embedding) == pytest.approx(1.0, rel=1e-5)


def test_openai_429_is_rate_limit_error_with_retry_after(oai_server: OpenAIFaultServer) -> None:
    oai_server.push(("status", 429, {"Retry-After": "1"}))
    with pytest.raises(openai.RateLimitError) as info:
        chat(oai_client(oai_server))
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.code == "rate_limit_exceeded"
    assert chat(oai_client(oai_server)).choices  # the script is used up: back to "ok"


def test_openai_500_is_internal_server_error(oai_server: OpenAIFaultServer) -> None:
    oai_server.push(("status", 500))
    with pytest.raises(openai.InternalServerError) as info:
        chat(oai_client(oai_server))
    assert info.value.status_code == 500


def test_openai_hang_is_api_timeout_error(oai_server: OpenAIFaultServer) -> None:
    oai_server.push(("hang", 3))
    with pytest.raises(openai.APITimeoutError):
        chat(oai_client(oai_server))


def test_openai_malformed_json_raises_json_decode_error(oai_server: OpenAIFaultServer) -> None:
    """A 200 `application/json` body that is not JSON: the SDK lets `json.JSONDecodeError` escape
    (it is not wrapped in an `openai.APIError`), strict validation or not."""
    oai_server.push(("malformed",), ("malformed",))
    for strict in (False, True):
        with pytest.raises(json.JSONDecodeError):
            chat(oai_client(oai_server, strict=strict))


def test_openai_bad_shape(oai_server: OpenAIFaultServer) -> None:
    """Valid JSON without `choices`: strict validation raises `APIResponseValidationError`; the
    default (lenient) client returns a `ChatCompletion` whose `choices` is None."""
    oai_server.push(("bad_shape",), ("bad_shape",))
    with pytest.raises(openai.APIResponseValidationError):
        chat(oai_client(oai_server, strict=True))
    assert chat(oai_client(oai_server)).choices is None


def test_requests_can_be_checked_for_a_secret(oai_server: OpenAIFaultServer) -> None:
    chat(oai_client(oai_server))
    assert oai_server.requests.containing("loopback server do?")
    assert not oai_server.requests.containing("sk-super-secret")


# --- google-genai -----------------------------------------------------------------------------
@pytest.fixture
def gemini_server() -> Iterator[GeminiServer]:
    with GeminiServer(responder=lambda prompt: f"Paris. ({prompt})") as server:
        yield server


def gemini_client(server: GeminiServer, api_key: str = "test-key") -> "genai.Client":
    options = genai_types.HttpOptions(base_url=server.base_url, api_version="v1beta", timeout=5_000)
    return genai.Client(api_key=api_key, http_options=options)


def test_genai_generate_content_with_usage(gemini_server: GeminiServer) -> None:
    client = gemini_client(gemini_server)  # keep a reference: a collected Client closes its transport
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="What is the capital of France?",
        config=genai_types.GenerateContentConfig(
            system_instruction="Answer briefly.", max_output_tokens=64, temperature=0.0,
        ),
    )
    assert response.text == "Paris. (What is the capital of France?)"
    assert response.candidates[0].finish_reason == genai_types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage.prompt_token_count == 6 + 2 and usage.candidates_token_count == 7
    assert usage.total_token_count == 15
    [recorded] = gemini_server.requests
    assert recorded.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert recorded.headers["x-goog-api-key"] == "test-key"
    assert recorded.body["contents"][0]["parts"][0]["text"] == "What is the capital of France?"
    assert recorded.body["systemInstruction"]["parts"][0]["text"] == "Answer briefly."
    assert recorded.body["generationConfig"]["maxOutputTokens"] == 64


def test_genai_max_output_tokens_truncates(gemini_server: GeminiServer) -> None:
    client = gemini_client(gemini_server)
    response = client.models.generate_content(
        model="gemini-2.5-flash", contents="one two three",
        config=genai_types.GenerateContentConfig(max_output_tokens=2),
    )
    assert response.text == "Paris. (one"
    assert response.candidates[0].finish_reason == genai_types.FinishReason.MAX_TOKENS


def test_genai_embeddings(gemini_server: GeminiServer) -> None:
    client = gemini_client(gemini_server)
    result = client.models.embed_content(model="text-embedding-004", contents=["alpha", "beta"])
    again = client.models.embed_content(model="text-embedding-004", contents=["alpha"])
    vectors = [e.values for e in result.embeddings]
    assert len(vectors) == 2 and all(len(v) == 8 for v in vectors)
    assert vectors[0] == again.embeddings[0].values and vectors[0] != vectors[1]
    assert sum(v * v for v in vectors[0]) == pytest.approx(1.0)
    assert gemini_server.requests[0].path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert len(gemini_server.requests[0].body["requests"]) == 2


def test_genai_wrong_key_is_401() -> None:
    with GeminiServer(api_key="the-right-key") as server:
        client = gemini_client(server, api_key="a-wrong-key")
        with pytest.raises(genai_errors.ClientError) as info:
            client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert info.value.code == 401 and info.value.status == "UNAUTHENTICATED"


def post_json(url: str, body: object, headers: dict[str, str]) -> tuple[int, object]:
    """POST JSON with the standard library; return (status, parsed body) for 2xx and errors alike."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_gemini_without_key_header_is_401(gemini_server: GeminiServer) -> None:
    """The SDK refuses to start without a key, so send the request without the header by hand."""
    url = gemini_server.base_url + "/v1beta/models/gemini-2.5-flash:generateContent"
    status, body = post_json(url, {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, {})
    assert status == 401 and body["error"]["status"] == "UNAUTHENTICATED"


def test_gemini_single_embed_content_route(gemini_server: GeminiServer) -> None:
    """`:embedContent` (the SDK batches even one text, so call it directly) honours outputDimensionality."""
    url = gemini_server.base_url + "/v1beta/models/text-embedding-004:embedContent"
    payload = {"content": {"parts": [{"text": "alpha"}]}, "outputDimensionality": 4}
    status, body = post_json(url, payload, {"x-goog-api-key": "k"})
    assert status == 200 and len(body["embedding"]["values"]) == 4
