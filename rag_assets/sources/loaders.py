"""The loader registry: source kind -> loader, and file extension -> loader for the mixed "files" kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from rag_assets.sources import beir, files, github_issues, html, pdf, slack, text
from rag_assets.sources.document import LoadResult
from rag_assets.sources.spec import SourceSpec

Loader = Callable[[SourceSpec, Path], LoadResult]

FILE_LOADERS: Mapping[str, files.FileLoader] = {
    ".md": text.load_text_file,
    ".markdown": text.load_text_file,
    ".txt": text.load_text_file,
    ".rst": text.load_text_file,
    ".html": html.load_html_file,
    ".htm": html.load_html_file,
    ".pdf": pdf.load_pdf_file,
    ".json": github_issues.load_issues_file,
}

LOADERS: dict[str, Loader] = {
    "markdown": text.load_markdown,
    "files": partial(files.load_files, handlers=FILE_LOADERS, fallback=text.load_text_file),
    "html": html.load_html,
    "pdf": pdf.load_pdf,
    "github_issues": github_issues.load_github_issues,
    "slack": slack.load_slack,
    "beir": beir.load_beir,
}
