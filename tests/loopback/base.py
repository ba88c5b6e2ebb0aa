"""Shared base for loopback HTTP test servers.

A `LoopbackServer` runs a stdlib `ThreadingHTTPServer` on 127.0.0.1, port 0, in a
background thread, records every request it receives, and hands each one to
`handle()`, which subclasses implement to speak a provider's wire protocol.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Iterator, Mapping, Self

JSON = Any


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it.

    `body` is the parsed JSON body (None when empty or not JSON); `raw` is the bytes as sent.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: JSON
    raw: bytes

    def contains(self, needle: str) -> bool:
        """True if `needle` appears in the path, any header value, or the raw body."""
        haystacks = [self.path, *self.headers.values(), self.raw.decode("utf-8", "replace")]
        return any(needle in h for h in haystacks)


@dataclass
class Reply:
    """What to send back: a status, extra headers, and a raw body."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def json_reply(status: int, payload: JSON, headers: Mapping[str, str] | None = None) -> Reply:
    """A `Reply` whose body is `payload` encoded as JSON."""
    return Reply(status, json.dumps(payload).encode(), dict(headers or {}))


def sse_reply(events: Iterable[JSON], done: bool = False) -> Reply:
    """Server-sent events, one `data:` line per event (the body of a streamed response); `done` ends with
    OpenAI's `data: [DONE]`."""
    lines = [f"data: {json.dumps(e)}\n\n" for e in events] + (["data: [DONE]\n\n"] if done else [])
    return Reply(200, "".join(lines).encode(), content_type="text/event-stream")


def pieces(text: str, size: int = 3) -> list[str]:
    """`text` cut into pieces of `size` words (each with its leading space), as a streaming server sends it."""
    words = re.findall(r"\s*\S+", text) or [text]
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def word_count(text: str) -> int:
    """Whitespace word count: the token count these fake providers report."""
    return len(text.split())


def fake_embedding(text: str, dim: int = 8) -> list[float]:
    """A deterministic, L2-normalised vector seeded by a hash of `text`."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    vec = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def echo_answer(prompt: str) -> str:
    """The default responder: a fixed answer quoting the last 40 characters of the prompt."""
    return f"Loopback answer about: {prompt[-40:]}"


class RequestLog:
    """A thread-safe, append-only list of `RecordedRequest`."""

    def __init__(self) -> None:
        self._items: list[RecordedRequest] = []
        self._lock = threading.Lock()

    def append(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __getitem__(self, index: int) -> RecordedRequest:
        with self._lock:
            return self._items[index]

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self.snapshot())

    def containing(self, needle: str) -> list[RecordedRequest]:
        """The recorded requests in which `needle` appears anywhere (see `RecordedRequest.contains`)."""
        return [r for r in self.snapshot() if r.contains(needle)]


class LoopbackServer:
    """Base recording server; subclasses implement `handle(request) -> Reply`.

    Use as a context manager: `with Server() as s: ... s.base_url ... s.requests`.
    """

    def __init__(self) -> None:
        self.requests = RequestLog()
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- to override ------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        """Answer one request (called after it is recorded)."""
        raise NotImplementedError

    def sleep(self, seconds: float) -> None:
        """Sleep in a handler, waking early when the server is closed."""
        self._closing.wait(seconds)

    # --- lifecycle --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, without a trailing slash."""
        if self._httpd is None:
            raise RuntimeError("server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        """Bind 127.0.0.1 on an ephemeral port and serve in a daemon thread."""
        self._closing.clear()
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the socket (idempotent)."""
        self._closing.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_json(body: bytes) -> JSON:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _make_handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    """A request-handler class bound to `server`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once: no 40 ms delayed-ACK stall

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = RecordedRequest(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=_parse_json(body),
                raw=body,
            )
            server.requests.append(request)
            try:
                reply = server.handle(request)
            except Exception as exc:  # a bug in a handler should surface as a 500, not a hang
                reply = json_reply(500, {"error": {"message": f"loopback handler error: {exc!r}"}})
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. its timeout fired)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler
