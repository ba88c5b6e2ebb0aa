"""Unit tests for the source loaders (no network: HTTP tests use a loopback server on 127.0.0.1)."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading
import time
import typing
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtures_bad_inputs import EXPECTED, GOOD_PDF_TEXT, make_bad_inputs, minimal_pdf
from pypdf import PdfReader, PdfWriter

from rag_assets.sources import SourceSpec, load_source
from rag_assets.sources.beir import beir_doc_id_from_locator
from rag_assets.sources.document import LoadResult
from rag_assets.sources.files import FoundFile, Unreadable, decode_text, load_walked, read_text_file
from rag_assets.sources.html import html_to_markdown, load_html
from rag_assets.sources.loaders import LOADERS
from rag_assets.sources.pdf import NO_TEXT
from rag_assets.sources.spec import SourceKind
from rag_assets.sources.text import markdown_title


def spec(kind: str, *paths: str, **extra: typing.Any) -> SourceSpec:
    return SourceSpec(name=f"test-{kind}", kind=kind, paths=list(paths), **extra)


def by_locator(result: LoadResult) -> tuple[dict, dict]:
    return {d.locator: d for d in result.documents}, {f.locator: f.reason for f in result.failures}


def write_json(path: Path, data: typing.Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_every_kind_has_a_loader() -> None:
    assert set(LOADERS) == set(typing.get_args(SourceKind))


# --- the mixed "files" kind over good and bad inputs -----------------------------------------------------


def test_files_kind_loads_good_inputs_and_one_failure_per_bad_input(bad_inputs_dir: Path) -> None:
    expected = EXPECTED
    result = load_source(spec("files", bad_inputs_dir.name), bad_inputs_dir.parent)
    docs, failures = by_locator(result)

    assert {loc: d.title for loc, d in docs.items()} == expected["documents"]
    assert len(result.failures) == len(expected["failures"])
    assert set(failures) == set(expected["failures"])
    for locator, reason in expected["failures"].items():
        assert failures[locator].startswith(reason), (locator, failures[locator])
    assert GOOD_PDF_TEXT in docs["report.pdf"].text
    assert docs["guide.md"].text.startswith("# Deployment Guide")
    assert docs["guide.md"].link == (bad_inputs_dir / "guide.md").as_uri()
    assert docs["guide.md"].updated_at.tzinfo is not None

    frame = result.to_frame(sensitive=False)
    assert frame.height == len(expected["documents"]) + len(expected["failures"])
    assert frame.filter(frame["error"].is_not_null()).height == len(expected["failures"])


def test_bad_inputs_fixture_is_fast_and_big_file_is_50_mb(tmp_path: Path) -> None:
    start = time.perf_counter()
    assert make_bad_inputs(tmp_path) == EXPECTED
    assert time.perf_counter() - start < 2.0
    assert (tmp_path / "big.txt").stat().st_size == 50 * 1024 * 1024


def test_good_pdf_fixture_is_readable_by_pypdf() -> None:
    reader = PdfReader(io.BytesIO(minimal_pdf([GOOD_PDF_TEXT], title="T")))
    assert GOOD_PDF_TEXT in reader.pages[0].extract_text()
    assert reader.metadata.title == "T"


def test_missing_path_is_a_failure(tmp_path: Path) -> None:
    result = load_source(spec("files", "nope"), tmp_path)
    assert result.documents == []
    assert [f.reason for f in result.failures] == [f"path not found: {tmp_path / 'nope'}"]


def test_unexpected_loader_error_fails_only_that_file(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("# B\n", encoding="utf-8")

    def flaky(spec: SourceSpec, found: FoundFile) -> LoadResult:
        if found.locator == "a.md":
            raise RuntimeError("boom")
        return LoadResult()

    result = load_walked(spec("markdown", "."), tmp_path, ["*.md"], flaky)
    assert [(f.locator, f.reason) for f in result.failures] == [("a.md", "unexpected error: RuntimeError: boom")]


# --- safe reading ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xef\xbb\xbfhello", "hello"),
        ("h\u00e9llo".encode("utf-16"), "h\u00e9llo"),
        (b"ok \xff\xfe then", Unreadable("invalid UTF-8 at byte 3")),
        (b"\xef\xbb\xbfab\xc3", Unreadable("invalid UTF-8 at byte 5")),
        (b"\x89PNG\r\n\x1a\n....", Unreadable("binary file (PNG image)")),
        (b"PK\x03\x04rest", Unreadable("binary file (ZIP archive)")),
        (b"text\x00more", Unreadable("binary file (contains NUL bytes)")),
    ],
)
def test_decode_text(data: bytes, expected: str | Unreadable) -> None:
    assert decode_text(data) == expected


def test_read_text_file_limits(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x" * 3000, encoding="utf-8")
    assert read_text_file(path, 3000) == "x" * 3000
    too_large = read_text_file(path, 1024)
    assert isinstance(too_large, Unreadable) and too_large.reason.startswith("file too large: ")
    path.write_text("  \n\t\n", encoding="utf-8")
    assert read_text_file(path, 1024) == Unreadable("empty file (whitespace only)")


def test_size_is_checked_before_reading(tmp_path: Path) -> None:
    """A sparse 4 GiB file fails at once: it is judged by `stat`, never read."""
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.truncate(4 * 1024**3)
    start = time.perf_counter()
    assert read_text_file(path, 10 * 1024 * 1024) == Unreadable("file too large: 4096.0 MB > 10.0 MB limit")
    assert time.perf_counter() - start < 0.5


# --- Markdown and text -----------------------------------------------------------------------------------


def test_markdown_title_rules() -> None:
    assert markdown_title("intro\n# Real Title #\n## sub", "stem") == "Real Title"
    assert markdown_title("---\ntitle: From Front Matter\n---\nbody\n", "stem") == "From Front Matter"
    assert markdown_title("---\ntitle: FM\n---\n# H1 wins\n", "stem") == "H1 wins"
    assert markdown_title("```bash\n# not a title\n```\ntext", "stem") == "stem"
    assert markdown_title("#hashtag is not a heading", "stem") == "stem"


def test_markdown_kind_walks_folders(tmp_path: Path) -> None:
    docs_dir = tmp_path / "docs"
    (docs_dir / "guides" / ".drafts").mkdir(parents=True)
    (docs_dir / "guides" / "setup.md").write_text("# Setup\n\nInstall it.\n", encoding="utf-8")
    (docs_dir / "guides" / ".drafts" / "wip.md").write_text("# WIP\n", encoding="utf-8")
    (docs_dir / "notes.txt").write_text("plain notes\n", encoding="utf-8")
    (docs_dir / "script.py").write_text("print('no')\n", encoding="utf-8")
    (docs_dir / "CHANGES.MD").write_text("# Changes\n", encoding="utf-8")
    (docs_dir / "README.md").write_text("---\ntitle: Readme\n---\nHello\n", encoding="utf-8")

    docs, failures = by_locator(load_source(spec("markdown", "docs"), tmp_path))
    assert failures == {}
    assert {loc: d.title for loc, d in docs.items()} == {
        "CHANGES.MD": "Changes",
        "README.md": "Readme",
        "guides/setup.md": "Setup",
        "notes.txt": "notes",
    }
    assert docs["guides/setup.md"].text == "# Setup\n\nInstall it.\n"

    only_guides = load_source(spec("markdown", "docs", include=["guides/*.md"]), tmp_path)
    assert [d.locator for d in only_guides.documents] == ["guides/setup.md"]
    single = load_source(spec("markdown", "docs/notes.txt"), tmp_path)
    assert [d.locator for d in single.documents] == ["notes.txt"]


def test_markdown_file_mtime_is_utc(tmp_path: Path) -> None:
    path = tmp_path / "a.md"
    path.write_text("# A\n", encoding="utf-8")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    (doc,) = load_source(spec("markdown", "a.md"), tmp_path).documents
    assert doc.updated_at == datetime.fromtimestamp(1_700_000_000, tz=timezone.utc)


# --- PDF -------------------------------------------------------------------------------------------------


def test_pdf_kind(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "titled.pdf").write_bytes(minimal_pdf(["Page one text."], title="Annual Report"))
    (tmp_path / "untitled.pdf").write_bytes(minimal_pdf(["Some text."]))
    (tmp_path / "scanned.pdf").write_bytes(minimal_pdf([]))
    (tmp_path / "truncated.pdf").write_bytes(minimal_pdf(["Cut short."])[:150])
    (tmp_path / "garbage.pdf").write_bytes(b"%PDF-1.5\n" + bytes(range(256)) * 8)
    (tmp_path / "fake.pdf").write_bytes(b"just text, not a pdf")

    locked = io.BytesIO()
    writer = PdfWriter(clone_from=io.BytesIO(minimal_pdf(["Secret text."])))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    writer.write(locked)
    (tmp_path / "locked.pdf").write_bytes(locked.getvalue())

    open_owner_only = io.BytesIO()
    writer = PdfWriter(clone_from=io.BytesIO(minimal_pdf(["Owner-only protection."])))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    writer.write(open_owner_only)
    (tmp_path / "owner_only.pdf").write_bytes(open_owner_only.getvalue())

    with caplog.at_level(logging.WARNING):
        docs, failures = by_locator(load_source(spec("pdf", "."), tmp_path))

    assert not [r for r in caplog.records if r.name.startswith("pypdf")], "pypdf warnings must be silenced"
    assert {loc: d.title for loc, d in docs.items()} == {
        "titled.pdf": "Annual Report",
        "untitled.pdf": "untitled",
        "owner_only.pdf": "owner_only",
    }
    assert docs["titled.pdf"].text == "Page one text."
    assert failures["scanned.pdf"] == NO_TEXT
    assert failures["locked.pdf"] == "encrypted PDF (password required)"
    assert failures["fake.pdf"] == "corrupt PDF: no %PDF- header"
    for name in ("truncated.pdf", "garbage.pdf"):
        assert failures[name].startswith("corrupt PDF: "), failures[name]


def test_pdf_pages_are_joined_by_blank_lines(tmp_path: Path) -> None:
    writer = PdfWriter()
    for text in ("First page.", "Second page."):
        writer.append(PdfReader(io.BytesIO(minimal_pdf([text]))))
    out = io.BytesIO()
    writer.write(out)
    (tmp_path / "two.pdf").write_bytes(out.getvalue())
    (doc,) = load_source(spec("pdf", "two.pdf"), tmp_path).documents
    assert doc.text == "First page.\n\nSecond page."


# --- HTML ------------------------------------------------------------------------------------------------

PAGE = """<!doctype html><html><head><title>Runbook</title><style>body{}</style>
<script>var tracking = 1;</script></head><body>
<header><a href="/">Home</a></header><nav><a href="/a">A</a> <a href="/b">B</a></nav>
<main><h1>On-call runbook</h1><p>Check the   dashboard
first.</p><h2>Escalation</h2><ul><li>Page the lead</li><li>Open an incident</li></ul>
<pre>kubectl get pods</pre></main><footer>Copyright</footer><noscript>Enable JS</noscript>
</body></html>"""


def test_html_to_markdown_keeps_structure_and_drops_chrome() -> None:
    title, text = html_to_markdown(PAGE)
    assert title == "Runbook"
    assert text == (
        "# On-call runbook\n\nCheck the dashboard first.\n\n## Escalation\n\n"
        "- Page the lead\n- Open an incident\n\n```\nkubectl get pods\n```"
    )
    assert html_to_markdown("<h1>Heading title</h1><p>x</p>")[0] == "Heading title"
    assert html_to_markdown("<div>" * 5000 + "deep" + "</div>" * 5000) == (None, "deep")


def test_html_local_files(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "runbook.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "site" / "blank.htm").write_text("<html><body><script>x()</script></body></html>", encoding="utf-8")
    docs, failures = by_locator(load_source(spec("html", "site"), tmp_path))
    assert docs["runbook.html"].title == "Runbook"
    assert failures == {"blank.htm": "no text content in HTML"}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        routes = {
            "/page.html": (200, "text/html; charset=utf-8", PAGE),
            "/data.json": (200, "application/json", '{"a": 1}'),
            "/error": (500, "text/html", "<p>oops</p>"),
        }
        if self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/page.html")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(1.0)
        status, content_type, body = routes.get(self.path, (404, "text/html", "<p>not found</p>"))
        payload = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Last-Modified", "Tue, 05 Mar 2024 10:00:00 GMT")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: typing.Any) -> None:  # noqa: A002 - silence the access log
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: typing.Any, client_address: typing.Any) -> None:
        pass  # the client hung up on /slow (the timeout test): expected, not worth a traceback


@pytest.fixture
def loopback_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Base URL of a loopback HTTP server (127.0.0.1, ephemeral port) running in a thread."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_html_urls_from_a_loopback_server(loopback_url: str, tmp_path: Path) -> None:
    """Fetches pages from a loopback server (127.0.0.1, no internet): a page, a redirect, a 404,
    a 500, a non-HTML content type, a timeout, and a refused connection."""
    urls = {
        name: f"{loopback_url}/{name}" for name in ("page.html", "moved", "missing", "error", "data.json", "slow")
    }
    with socket.socket() as probe:  # a loopback port with nothing listening
        probe.bind(("127.0.0.1", 0))
        closed_port = f"http://127.0.0.1:{probe.getsockname()[1]}/unreachable"
    source = SourceSpec(name="web", kind="html", urls=[*urls.values(), closed_port])
    docs, failures = by_locator(load_html(source, tmp_path, timeout=0.3))

    page = docs[urls["page.html"]]
    assert (page.title, page.link) == ("Runbook", urls["page.html"])
    assert page.text.startswith("# On-call runbook")
    assert page.updated_at == datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc)
    assert docs[urls["moved"]].text == page.text
    assert failures[urls["missing"]] == "HTTP 404"
    assert failures[urls["error"]] == "HTTP 500"
    assert failures[urls["data.json"]] == "not HTML (content-type: application/json)"
    assert failures[urls["slow"]] == "timeout after 0.3s"
    assert failures[closed_port].startswith("request failed: ConnectError")
    assert len(docs) == 2 and len(failures) == 5


# --- GitHub issues ---------------------------------------------------------------------------------------


def _issue(number: int, title: str, body: str | None, **extra: typing.Any) -> dict:
    return {
        "url": f"https://api.github.com/repos/acme/widget/issues/{number}",
        "html_url": f"https://github.com/acme/widget/issues/{number}",
        "number": number,
        "title": title,
        "user": {"login": "alice", "id": 1},
        "labels": [{"id": 7, "name": "bug", "color": "d73a4a"}],
        "state": "open",
        "comments": 1,
        "created_at": "2024-03-01T09:00:00Z",
        "updated_at": "2024-03-02T12:30:00Z",
        "body": body,
        **extra,
    }


def _comment(number: int, login: str, body: str, created_at: str) -> dict:
    return {
        "url": f"https://api.github.com/repos/acme/widget/issues/comments/{number * 100}",
        "html_url": f"https://github.com/acme/widget/issues/{number}#issuecomment-{number * 100}",
        "issue_url": f"https://api.github.com/repos/acme/widget/issues/{number}",
        "user": {"login": login},
        "created_at": created_at,
        "body": body,
    }


def test_github_issues_export_with_sibling_comments(tmp_path: Path) -> None:
    export = tmp_path / "gh"
    write_json(
        export / "issues.json",
        [
            _issue(12, "Crash on startup", "It crashes.\r\n\r\nSteps: run it."),
            _issue(13, "Add dark mode", None, pull_request={"url": "https://api.github.com/x"}),
            {"title": "no number"},
            "not an object",
        ],
    )
    write_json(
        export / "comments.json",
        [
            _comment(12, "carol", "Fixed in #14.", "2024-03-03T08:00:00Z"),
            _comment(12, "bob", "Same here.", "2024-03-02T10:00:00Z"),
        ],
    )
    docs, failures = by_locator(load_source(spec("github_issues", "gh"), tmp_path))

    assert set(docs) == {"issues/12", "issues/13"}
    issue = docs["issues/12"]
    assert issue.title == "#12 Crash on startup"
    assert issue.link == "https://github.com/acme/widget/issues/12"
    assert issue.updated_at == datetime(2024, 3, 2, 12, 30, tzinfo=timezone.utc)
    assert issue.text == (
        "# #12 Crash on startup\n\n*Issue by @alice · open · labels: bug*\n\nIt crashes.\n\nSteps: run it.\n\n"
        "### Comment by @bob (2024-03-02)\n\nSame here.\n\n"
        "### Comment by @carol (2024-03-03)\n\nFixed in #14."
    )
    assert docs["issues/13"].text == "# #13 Add dark mode\n\n*Pull request by @alice · open · labels: bug*"
    assert failures == {
        "issues.json[2]": "malformed issue at index 2: missing 'number'",
        "issues.json[3]": "malformed issue at index 3: expected an object, got string",
    }


def test_github_issues_embedded_comments_and_bad_files(tmp_path: Path) -> None:
    write_json(
        tmp_path / "a.json",
        [_issue(1, "One", "Body one", comments_data=[_comment(1, "dan", "Embedded.", "2024-01-05T00:00:00Z")])],
    )
    write_json(tmp_path / "b.json", [_issue(2, "Two", "Body two", comment_list=[])])
    write_json(tmp_path / "object.json", {"issues": []})
    write_json(tmp_path / "numbers.json", [1, 2, 3])
    (tmp_path / "truncated.json").write_text('[{"number": 3, "title": "x"', encoding="utf-8")

    docs, failures = by_locator(load_source(spec("github_issues", "."), tmp_path))
    assert set(docs) == {"issues/1", "issues/2"}
    assert docs["issues/1"].text.endswith("### Comment by @dan (2024-01-05)\n\nEmbedded.")
    assert "Comment by" not in docs["issues/2"].text
    assert failures["object.json"] == "malformed export: expected a JSON list of issues, got object"
    assert failures["numbers.json"].startswith("malformed export: no GitHub issue objects")
    assert failures["truncated.json"].startswith("malformed export: invalid JSON (")
    assert len(failures) == 3


def test_files_kind_reads_github_export_with_its_comments_file(tmp_path: Path) -> None:
    write_json(tmp_path / "mixed" / "issues.json", [_issue(5, "Five", "Body")])
    write_json(tmp_path / "mixed" / "comments.json", [_comment(5, "erin", "A comment.", "2024-02-01T00:00:00Z")])
    docs, failures = by_locator(load_source(spec("files", "mixed"), tmp_path))
    assert failures == {}
    assert list(docs) == ["issues/5"]
    assert "### Comment by @erin (2024-02-01)" in docs["issues/5"].text


# --- Slack -----------------------------------------------------------------------------------------------


def _message(ts: str, text: str, user: str = "U1", **extra: typing.Any) -> dict:
    return {"type": "message", "user": user, "text": text, "ts": ts, **extra}


def make_slack_export(root: Path) -> None:
    write_json(root / "channels.json", [{"id": "C1", "name": "general"}, {"id": "C2", "name": "incidents"}])
    write_json(
        root / "users.json",
        [
            {"id": "U1", "name": "alice", "real_name": "Alice Smith", "profile": {"real_name": "Alice Smith"}},
            {"id": "U2", "name": "bob", "profile": {"real_name": "Bob Jones", "display_name": "bob"}},
        ],
    )
    # 2024-03-05 09:00:00 UTC = 1709629200
    write_json(
        root / "general" / "2024-03-05.json",
        [
            _message("1709629260.000200", "", user="U2", subtype="channel_join"),
            _message("1709629200.000100", "Deploy is at <!here> 10:00 &amp; <https://ci.example.com|CI> is green"),
            _message("1709629320.000300", "Who owns <#C2|incidents>?", user="U2", thread_ts="1709629320.000300"),
            _message("1709629380.000400", "<@U1> does", user="U3", user_profile={"real_name": "Carol"},
                     thread_ts="1709629320.000300", parent_user_id="U2"),
        ],
    )
    write_json(root / "general" / "2024-03-06.json", [_message("1709712000.000100", "", subtype="channel_leave")])
    (root / "incidents").mkdir()
    (root / "incidents" / "2024-03-05.json").write_text('[{"ts": "1709629200.1", "text": "cut', encoding="utf-8")
    write_json(root / "incidents" / "2024-03-07.json", {"messages": []})
    write_json(root / "incidents" / "2024-03-08.json", [_message("1709892000.000100", "All clear", user="U9")])
    write_json(root / "incidents" / "notes.json", [{"not": "a day file"}])


def test_slack_export(tmp_path: Path) -> None:
    make_slack_export(tmp_path / "slack")
    docs, failures = by_locator(load_source(spec("slack", "slack"), tmp_path))

    assert set(docs) == {"general/2024-03-05", "incidents/2024-03-08"}
    day = docs["general/2024-03-05"]
    assert day.title == "#general 2024-03-05"
    assert day.text == (
        "**Alice Smith** (09:00): Deploy is at @here 10:00 & CI (https://ci.example.com) is green\n\n"
        "**Bob Jones** (09:02): Who owns #incidents?\n"
        "> **Carol** (09:03): @Alice Smith does"
    )
    assert day.updated_at.replace(microsecond=0) == datetime(2024, 3, 5, 9, 3, tzinfo=timezone.utc)
    assert docs["incidents/2024-03-08"].text == "**U9** (10:00): All clear"
    assert failures["incidents/2024-03-05"].startswith("malformed day file: invalid JSON (")
    assert failures["incidents/2024-03-07"] == "malformed day file: expected a JSON list of messages, got object"
    assert len(failures) == 2


def test_slack_export_without_channels_json_uses_folders(tmp_path: Path) -> None:
    write_json(tmp_path / "random" / "2024-01-01.json", [_message("1704067200.0", "Happy new year")])
    docs, failures = by_locator(load_source(spec("slack", "."), tmp_path))
    assert failures == {}
    assert docs["random/2024-01-01"].text == "**U1** (00:00): Happy new year"


def test_slack_missing_export_folder(tmp_path: Path) -> None:
    result = load_source(spec("slack", "absent"), tmp_path)
    assert [f.reason for f in result.failures] == [f"path not found: {tmp_path / 'absent'}"]


# --- BEIR ------------------------------------------------------------------------------------------------


def write_corpus(path: Path, records: list[typing.Any], extra_lines: list[str] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_beir_corpus(tmp_path: Path) -> None:
    write_corpus(
        tmp_path / "scifact" / "corpus.jsonl",
        [
            {"_id": "4983", "title": "Microstructural development", "text": "Alterations of the architecture."},
            {"_id": 5836, "title": "", "text": "An id given as a number."},
            {"_id": "4983", "title": "dup", "text": "duplicate id"},
            {"title": "no id", "text": "x"},
            {"_id": "7", "title": "", "text": ""},
            ["not", "an", "object"],
        ],
        extra_lines=["", '{"_id": "9", "text": "truncated'],
    )
    docs, failures = by_locator(load_source(spec("beir", "scifact"), tmp_path))

    assert list(docs) == ["4983", "5836"]
    assert docs["4983"].title == "Microstructural development"
    assert docs["4983"].text == "Alterations of the architecture."
    assert beir_doc_id_from_locator(docs["5836"].locator) == "5836"
    assert failures.pop("corpus.jsonl:8").startswith("bad corpus line 8: invalid JSON (")
    assert failures == {
        "corpus.jsonl:3": "bad corpus line 3: duplicate _id '4983' (first on line 1)",
        "corpus.jsonl:4": "bad corpus line 4: missing '_id'",
        "corpus.jsonl:5": "bad corpus line 5: empty document (no title or text)",
        "corpus.jsonl:6": "bad corpus line 6: expected an object, got array",
    }

    direct = load_source(spec("beir", "scifact/corpus.jsonl"), tmp_path)
    assert [d.locator for d in direct.documents] == ["4983", "5836"]
    assert [f.reason for f in load_source(spec("beir", "absent"), tmp_path).failures] == [
        f"path not found: {tmp_path / 'absent'}"
    ]
    (tmp_path / "empty_dataset").mkdir()
    assert [f.reason for f in load_source(spec("beir", "empty_dataset"), tmp_path).failures] == [
        f"path not found: {tmp_path / 'empty_dataset' / 'corpus.jsonl'}"
    ]


def test_beir_loads_5183_docs_fast(tmp_path: Path) -> None:
    records = [
        {"_id": str(i), "title": f"Paper {i}", "text": "Background. " * 120 + f"Finding {i}."} for i in range(5183)
    ]
    write_corpus(tmp_path / "corpus.jsonl", records)
    start = time.perf_counter()
    result = load_source(spec("beir", "."), tmp_path)
    elapsed = time.perf_counter() - start
    assert len(result.documents) == 5183 and result.failures == []
    assert elapsed < 1.0, f"{elapsed:.2f}s"
