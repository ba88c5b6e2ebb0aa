"""Shared file handling for loaders: walking a source's paths, safe reading, and the mixed "files" kind.

Reading never raises for bad content: every problem comes back as an `Unreadable` with a clear reason,
which loaders turn into a `Failure`. Sizes are checked with `stat` before anything is read.
"""

from __future__ import annotations

import codecs
import fnmatch
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag_assets.sources.document import Document, Failure, LoadResult
from rag_assets.sources.spec import SourceSpec

try:
    import orjson

    _json_loads: Callable[[str | bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is a transitive dependency
    _json_loads = json.loads

MB = 1024 * 1024
SNIFF_BYTES = 8192

# Leading bytes of common binary formats; each holds non-text bytes, so no text file starts with one
# (PDF's ASCII header is the exception, but a ".txt" that starts with it is a PDF all the same).
BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "PDF document"),
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"\x7fELF", "ELF executable"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE document"),
    (b"SQLite format 3\x00", "SQLite database"),
)
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class Unreadable:
    """Why a file (or response) could not be turned into text."""

    reason: str


@dataclass(frozen=True)
class FoundFile:
    """A file to load, with its locator: its path relative to the configured path it was found under."""

    path: Path
    locator: str

    @property
    def link(self) -> str:
        return self.path.as_uri()

    @property
    def updated_at(self) -> datetime:
        return file_mtime(self.path)


FileLoader = Callable[[SourceSpec, FoundFile], LoadResult]


def file_mtime(path: Path) -> datetime:
    """The file's modification time as a UTC-aware datetime."""
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)


def max_bytes(spec: SourceSpec) -> int:
    """The spec's per-file size limit in bytes (1 MB = 2**20 bytes)."""
    return int(spec.max_file_mb * MB)


def failure(spec: SourceSpec, found: FoundFile, reason: str) -> Failure:
    return Failure(source=spec.name, locator=found.locator, link=found.link, reason=reason)


def failed(spec: SourceSpec, found: FoundFile, reason: str) -> LoadResult:
    return LoadResult(failures=[failure(spec, found, reason)])


# --- walking ---------------------------------------------------------------------------------------------


def _matches(relative: str, patterns: Iterable[str]) -> bool:
    """Case-insensitive glob match: a pattern without "/" matches the file name, one with "/" the
    relative path (`*` crosses folders; a leading `**/` also matches at the top)."""
    relative = relative.lower()
    name = relative.rsplit("/", 1)[-1]
    for pattern in (p.lower() for p in patterns):
        if "/" not in pattern:
            if fnmatch.fnmatchcase(name, pattern):
                return True
        elif fnmatch.fnmatchcase(relative, pattern) or (
            pattern.startswith("**/") and fnmatch.fnmatchcase(relative, pattern[3:])
        ):
            return True
    return False


def _listing_failure(spec: SourceSpec, root: Path, error: OSError) -> Failure:
    where = Path(error.filename or root)
    locator = where.relative_to(root).as_posix() if where.is_relative_to(root) else str(where)
    return Failure(spec.name, locator, where.as_uri(), f"cannot list folder: {error.strerror or error}")


def _walk_folder(spec: SourceSpec, root: Path, patterns: list[str]) -> Iterator[FoundFile | Failure]:
    """Files under `root` matching `patterns`, in sorted order, skipping hidden files and folders.

    A folder that cannot be listed is yielded as a `Failure`.
    """
    errors: list[OSError] = []
    for folder, dirnames, filenames in os.walk(root, onerror=errors.append):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            path = Path(folder) / filename
            relative = path.relative_to(root).as_posix()
            if _matches(relative, patterns) and path.is_file():
                yield FoundFile(path=path, locator=relative)
    for error in errors:
        yield _listing_failure(spec, root, error)


def walk_source(
    spec: SourceSpec, base_dir: Path, default_include: list[str]
) -> Iterator[FoundFile | Failure]:
    """Every file of the spec's paths: a configured file as is, a folder walked with `include` globs.

    A configured path that does not exist is yielded as a `Failure`. With several configured paths,
    locators are prefixed by the configured path, so `a/README.md` and `b/README.md` stay distinct.
    """
    patterns = spec.include or default_include
    several = len(spec.paths) > 1
    for configured, path in zip(spec.paths, spec.resolved_paths(base_dir), strict=True):
        prefix = configured.rstrip("/") + "/" if several else ""
        if path.is_file():
            yield FoundFile(path=path, locator=configured if several else path.name)
        elif path.is_dir():
            for found in _walk_folder(spec, path, patterns):
                if prefix and isinstance(found, FoundFile):
                    found = FoundFile(path=found.path, locator=prefix + found.locator)
                yield found
        else:
            yield Failure(source=spec.name, locator=configured, link=str(path), reason=f"path not found: {path}")


def load_walked(
    spec: SourceSpec, base_dir: Path, default_include: list[str], load_file: FileLoader
) -> LoadResult:
    """Walk the spec's paths and load each file; an unexpected error in one file fails only that file."""
    result = LoadResult()
    for item in walk_source(spec, base_dir, default_include):
        if isinstance(item, Failure):
            result.failures.append(item)
            continue
        try:
            result.extend(load_file(spec, item))
        except Exception as exc:  # noqa: BLE001 - the safety net: a loader never raises for one bad file
            result.failures.append(failure(spec, item, f"unexpected error: {type(exc).__name__}: {exc}"))
    return result


# --- safe reading ----------------------------------------------------------------------------------------


def size_problem(path: Path, limit: int) -> str | None:
    """Why the file should not be read, judged by `stat` alone (empty, too large, unreadable), else None."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot stat file: {exc.strerror or exc}"
    if size == 0:
        return "empty file"
    if size > limit:
        return f"file too large: {size / MB:.1f} MB > {limit / MB:.1f} MB limit"
    return None


def read_bytes(path: Path, limit: int) -> bytes | Unreadable:
    """The file's bytes, or why not: empty, over `limit` bytes (checked before reading), or an OS error."""
    problem = size_problem(path, limit)
    if problem:
        return Unreadable(problem)
    try:
        with path.open("rb") as handle:
            # One byte past the stat size (capped by the limit) tells a file that grew since stat.
            data = handle.read(min(limit, path.stat().st_size + 1) + 1)
    except OSError as exc:
        return Unreadable(f"cannot read file: {exc.strerror or exc}")
    if len(data) > limit:
        return Unreadable(f"file too large: > {limit / MB:.1f} MB limit")
    return data


def binary_kind(data: bytes) -> str | None:
    """A description of why `data` looks binary (known magic, NUL bytes in the first 8 KiB), else None."""
    if data.startswith(UTF16_BOMS):
        return None
    for magic, description in BINARY_MAGIC:
        if data.startswith(magic):
            return description
    if b"\x00" in data[:SNIFF_BYTES]:
        return "contains NUL bytes"
    return None


def decode_text(data: bytes) -> str | Unreadable:
    """Decode UTF-8 (an optional BOM is dropped) or BOM-marked UTF-16; never guess other encodings."""
    kind = binary_kind(data)
    if kind:
        return Unreadable(f"binary file ({kind})")
    if data.startswith(UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            return Unreadable(f"invalid UTF-16 at byte {exc.start}")
    offset = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError as exc:
        return Unreadable(f"invalid UTF-8 at byte {exc.start + offset}")


def read_text_file(path: Path, limit: int) -> str | Unreadable:
    """The file's text, or why not: empty, too large, binary, or not valid UTF-8."""
    data = read_bytes(path, limit)
    if isinstance(data, Unreadable):
        return data
    text = decode_text(data)
    if isinstance(text, str) and not text.strip():
        return Unreadable("empty file (whitespace only)")
    return text


def read_json_file(path: Path, limit: int) -> Any | Unreadable:
    """Parsed JSON, or why not (the text checks of `read_text_file`, then "invalid JSON (…)")."""
    text = read_text_file(path, limit)
    if isinstance(text, Unreadable):
        return text
    return parse_json(text)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages ("object", "array", ...)."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def parse_json(text: str | bytes) -> Any | Unreadable:
    try:
        return _json_loads(text)
    except ValueError as exc:  # json.JSONDecodeError and orjson.JSONDecodeError are ValueErrors
        return Unreadable(f"invalid JSON ({exc})")


# --- the "files" kind ------------------------------------------------------------------------------------


def load_files(
    spec: SourceSpec,
    base_dir: Path,
    *,
    handlers: Mapping[str, FileLoader],
    fallback: FileLoader,
) -> LoadResult:
    """A mixed folder: each file goes to the loader for its extension, any other file to `fallback`."""

    def dispatch(spec: SourceSpec, found: FoundFile) -> LoadResult:
        return handlers.get(found.path.suffix.lower(), fallback)(spec, found)

    return load_walked(spec, base_dir, ["*"], dispatch)


def text_document(spec: SourceSpec, found: FoundFile, title: str, text: str) -> Document:
    """A document for a whole local file."""
    return Document(
        source=spec.name,
        locator=found.locator,
        link=found.link,
        title=title,
        text=text,
        updated_at=found.updated_at,
    )
