"""HTML documents, local files and fetched URLs, converted to Markdown-ish text with `selectolax`.

Headings become `#` lines and blocks become paragraphs, so the Markdown chunker sees the structure;
page chrome (scripts, styles, navigation, page header and footer) is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
from selectolax.lexbor import LexborHTMLParser, LexborNode

from rag_assets.sources.document import Document, Failure, LoadResult
from rag_assets.sources.files import (
    FoundFile,
    Unreadable,
    failed,
    load_walked,
    max_bytes,
    read_text_file,
    text_document,
)
from rag_assets.sources.spec import SourceSpec

DEFAULT_INCLUDE = ["*.html", "*.htm"]
FETCH_TIMEOUT_S = 10.0
HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})
USER_AGENT = "rag-assets/0.1 (+document loader)"

DROP_TAGS = ["script", "style", "noscript", "template", "nav", "footer", "svg", "iframe", "object"]
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption center dd details dialog div dl dt fieldset figcaption "
    "figure form hgroup hr li main ol p section summary table tbody tfoot thead ul".split()
)
_SPACES = re.compile(r"\s+")


class _Blocks:
    """Accumulates Markdown blocks while walking the DOM in document order."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, str]] = []  # (kind, text); consecutive list items / rows stay together
        self.inline: list[str] = []
        self.prefix = ""
        self.kind = "p"

    def flush(self) -> None:
        lines = (" ".join(line.split()) for line in "".join(self.inline).split("\n"))
        text = "\n".join(line for line in lines if line)
        self.inline.clear()
        if text:
            self.blocks.append((self.kind, self.prefix + text))
            self.prefix, self.kind = "", "p"

    def add_block(self, text: str, kind: str = "p") -> None:
        self.flush()
        if text:
            self.blocks.append((kind, text))

    def markdown(self) -> str:
        self.flush()
        out: list[str] = []
        previous = ""
        for kind, text in self.blocks:
            if out:
                out.append("\n" if kind == previous and kind in ("li", "tr") else "\n\n")
            out.append(text)
            previous = kind
        return "".join(out)

    def walk(self, root: LexborNode) -> None:
        """Visit the DOM under `root` in document order (iteratively: deep nesting is no problem)."""
        stack: list[LexborNode | str] = [*reversed(list(root.iter(include_text=True)))]
        while stack:
            node = stack.pop()
            if isinstance(node, str):  # the end of a block ("block") or list item ("li")
                self.flush()
                if node == "li":
                    self.prefix, self.kind = "", "p"
                continue
            tag = node.tag
            if node.is_text_node:
                self.inline.append(_SPACES.sub(" ", node.text(deep=False)))
            elif node.is_comment_node or tag is None:
                continue
            elif tag in HEADINGS:
                title = _clean(node.text())
                self.add_block(f"{'#' * HEADINGS[tag]} {title}" if title else "")
            elif tag == "pre":
                code = node.text().strip("\n")
                self.add_block(f"```\n{code}\n```" if code.strip() else "")
            elif tag == "br":
                self.inline.append("\n")
            elif tag == "tr":
                cells = [_clean(cell.text()) for cell in node.css("td, th")]
                self.add_block(" | ".join(cell for cell in cells if cell), "tr")
            else:
                if tag == "li":
                    self.flush()
                    self.prefix, self.kind = "- ", "li"
                    stack.append("li")
                elif tag in BLOCK_TAGS:
                    self.flush()
                    stack.append("block")
                stack.extend(reversed(list(node.iter(include_text=True))))  # inline elements: just descend


def _clean(text: str) -> str:
    return " ".join(text.split())


def _drop_page_headers(tree: LexborHTMLParser) -> None:
    """Drop `<header>` page chrome, but keep an article's own header (it often holds the title)."""
    for header in tree.css("header"):
        parent = header.parent
        while parent is not None and parent.tag not in ("article", "main"):
            parent = parent.parent
        if parent is None:
            header.decompose()


def html_to_markdown(html: str) -> tuple[str | None, str]:
    """(title, text): title from `<title>` or the first `<h1>`; text with `#` headings and paragraphs."""
    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    title = _clean(title_node.text()) if title_node is not None else ""
    tree.strip_tags(DROP_TAGS)
    _drop_page_headers(tree)
    if not title:
        h1 = tree.css_first("h1")
        title = _clean(h1.text()) if h1 is not None else ""
    root = tree.body or tree.root
    blocks = _Blocks()
    if root is not None:
        blocks.walk(root)
    return title or None, blocks.markdown()


# --- local files -----------------------------------------------------------------------------------------


def load_html_file(spec: SourceSpec, found: FoundFile) -> LoadResult:
    """One local HTML file as one document."""
    html = read_text_file(found.path, max_bytes(spec))
    if isinstance(html, Unreadable):
        return failed(spec, found, html.reason)
    title, text = html_to_markdown(html)
    if not text.strip():
        return failed(spec, found, "no text content in HTML")
    return LoadResult(documents=[text_document(spec, found, title or found.path.stem, text)])


# --- URLs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedPage:
    html: str
    last_modified: datetime | None


def _last_modified(response: httpx.Response) -> datetime | None:
    value = response.headers.get("last-modified")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", errors="replace")


def fetch_html(client: httpx.Client, url: str, limit: int) -> FetchedPage | Unreadable:
    """GET an HTML page, or why not: HTTP error status, timeout, not HTML, too large, network error."""
    try:
        with client.stream("GET", url) as response:
            if response.is_error:
                return Unreadable(f"HTTP {response.status_code}")
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type not in HTML_MEDIA_TYPES:
                return Unreadable(f"not HTML (content-type: {media_type or 'missing'})")
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > limit:
                    return Unreadable(f"response too large: > {limit / 2**20:.1f} MB limit")
            return FetchedPage(_decode(bytes(body), response.charset_encoding), _last_modified(response))
    except httpx.TimeoutException:
        timeout = client.timeout.read or client.timeout.connect
        return Unreadable(f"timeout after {timeout:g}s" if timeout else "timeout")
    except httpx.TooManyRedirects:
        return Unreadable("too many redirects")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return Unreadable(f"request failed: {type(exc).__name__}: {exc}")


def load_url(spec: SourceSpec, client: httpx.Client, url: str) -> Document | Failure:
    """One URL as one document (locator and link: the URL as configured)."""
    page = fetch_html(client, url, max_bytes(spec))
    reason = page.reason if isinstance(page, Unreadable) else None
    if isinstance(page, FetchedPage):
        title, text = html_to_markdown(page.html)
        if text.strip():
            return Document(spec.name, url, url, title or url, text, page.last_modified)
        reason = "no text content in HTML"
    return Failure(source=spec.name, locator=url, link=url, reason=reason or "unknown error")


def load_urls(spec: SourceSpec, *, timeout: float = FETCH_TIMEOUT_S) -> LoadResult:
    """Fetch every URL of the spec; each bad URL becomes a `Failure`."""
    result = LoadResult()
    if not spec.urls:
        return result
    headers = {"User-Agent": USER_AGENT}
    with httpx.Client(timeout=timeout, follow_redirects=True, headers=headers) as client:
        for url in spec.urls:
            try:
                loaded = load_url(spec, client, url)
            except Exception as exc:  # noqa: BLE001 - the safety net: one bad page never fails the source
                loaded = Failure(spec.name, url, url, f"unexpected error: {type(exc).__name__}: {exc}")
            if isinstance(loaded, Failure):
                result.failures.append(loaded)
            else:
                result.documents.append(loaded)
    return result


def load_html(spec: SourceSpec, base_dir: Path, *, timeout: float = FETCH_TIMEOUT_S) -> LoadResult:
    """The "html" kind: local HTML files under the spec's paths, then the spec's URLs."""
    result = load_walked(spec, base_dir, DEFAULT_INCLUDE, load_html_file) if spec.paths else LoadResult()
    result.extend(load_urls(spec, timeout=timeout))
    return result
