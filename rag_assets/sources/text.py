"""Markdown and plain-text documents: the text is kept as is (the chunker is Markdown-aware)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from rag_assets.sources.document import LoadResult
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

DEFAULT_INCLUDE = ["*.md", "*.markdown", "*.txt", "*.rst"]

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def front_matter_title(text: str) -> str | None:
    """The `title:` of a YAML front-matter block at the top of the text, if any."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return None
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return None
    title = meta.get("title") if isinstance(meta, dict) else None
    if title is None:
        return None
    return str(title).strip() or None


def first_h1(text: str) -> str | None:
    """The first ATX level-1 heading (`# Title`) outside fenced code blocks, if any."""
    fence: str | None = None
    for line in text.splitlines():
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
            continue
        if fence is None:
            heading = _H1.match(line)
            if heading:
                return heading.group(1).strip()
    return None


def markdown_title(text: str, fallback: str) -> str:
    """First `# H1`, else front-matter `title:`, else `fallback` (the file stem)."""
    body = text
    match = _FRONT_MATTER.match(text)
    if match:
        body = text[match.end() :]
    return first_h1(body) or front_matter_title(text) or fallback


def load_text_file(spec: SourceSpec, found: FoundFile) -> LoadResult:
    """One Markdown or plain-text file as one document."""
    text = read_text_file(found.path, max_bytes(spec))
    if isinstance(text, Unreadable):
        return failed(spec, found, text.reason)
    title = markdown_title(text, found.path.stem)
    return LoadResult(documents=[text_document(spec, found, title, text)])


def load_markdown(spec: SourceSpec, base_dir: Path) -> LoadResult:
    """The "markdown" kind: Markdown/text files under the spec's paths."""
    return load_walked(spec, base_dir, DEFAULT_INCLUDE, load_text_file)
