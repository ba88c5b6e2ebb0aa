"""BEIR corpora: `corpus.jsonl` lines `{"_id", "title", "text"}`, one document per line.

The locator is the BEIR `_id`, so evaluation can map chunks back to the dataset's relevance judgements.
"""

from __future__ import annotations

import codecs
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rag_assets.sources.document import Document, Failure, LoadResult
from rag_assets.sources.files import Unreadable, file_mtime, json_type, max_bytes, parse_json, read_bytes
from rag_assets.sources.spec import SourceSpec

CORPUS_FILE = "corpus.jsonl"


def beir_doc_id_from_locator(locator: str) -> str:
    """The BEIR document id of a BEIR source's document (its locator is the `_id`)."""
    return locator


def corpus_path(path: Path) -> Path:
    """The corpus file: the path itself, or `corpus.jsonl` inside a dataset folder."""
    return path / CORPUS_FILE if path.is_dir() else path


def _line_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"expected an object, got {json_type(record)}"
    doc_id = record.get("_id")
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or str(doc_id) == "":
        return "missing '_id'"
    for key in ("title", "text"):
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"'{key}' is not a string"
    if not (record.get("title") or record.get("text")):
        return "empty document (no title or text)"
    return None


def parse_corpus(spec: SourceSpec, data: bytes, path: Path, updated_at: datetime | None) -> LoadResult:
    """Documents for the corpus lines, a failure per bad line (blank lines are skipped)."""
    result = LoadResult()
    link = path.as_uri()
    first_line: dict[str, int] = {}
    for number, line in enumerate(data.removeprefix(codecs.BOM_UTF8).splitlines(), start=1):
        if not line.strip():
            continue
        record = parse_json(line)
        problem = record.reason if isinstance(record, Unreadable) else _line_problem(record)
        doc_id = "" if problem else str(record["_id"])
        if not problem and doc_id in first_line:
            problem = f"duplicate _id {doc_id!r} (first on line {first_line[doc_id]})"
        if problem:
            reason = f"bad corpus line {number}: {problem}"
            result.failures.append(Failure(spec.name, f"{path.name}:{number}", f"{link}#L{number}", reason))
            continue
        first_line[doc_id] = number
        result.documents.append(
            Document(
                source=spec.name,
                locator=doc_id,
                link=f"{link}#{quote(doc_id, safe='')}",
                title=record.get("title") or "",
                text=record.get("text") or "",
                updated_at=updated_at,
            )
        )
    return result


def load_corpus(spec: SourceSpec, configured: str, path: Path) -> LoadResult:
    """One corpus file (or dataset folder)."""
    corpus = corpus_path(path)
    if not corpus.is_file():
        return LoadResult(failures=[Failure(spec.name, configured, str(corpus), f"path not found: {corpus}")])
    data = read_bytes(corpus, max_bytes(spec))
    if isinstance(data, Unreadable):
        return LoadResult(failures=[Failure(spec.name, configured, corpus.as_uri(), data.reason)])
    return parse_corpus(spec, data, corpus, file_mtime(corpus))


def load_beir(spec: SourceSpec, base_dir: Path) -> LoadResult:
    """The "beir" kind: each configured path is a BEIR dataset folder or its `corpus.jsonl`."""
    result = LoadResult()
    for configured, path in zip(spec.paths, spec.resolved_paths(base_dir), strict=True):
        result.extend(load_corpus(spec, configured, path))
    return result
