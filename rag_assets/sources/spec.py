"""Source specs: what `sources.yaml` declares, and a fingerprint that changes when a source does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rag_assets.hashing import sha256_hex

SourceKind = Literal["markdown", "files", "html", "pdf", "github_issues", "slack", "beir"]
SOURCE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DEFAULT_SOURCES_FILE = "sources.yaml"


class SourceSpec(BaseModel):
    """One source: a dynamic partition of the ingestion assets."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SOURCE_NAME_PATTERN)
    kind: SourceKind
    paths: list[str] = Field(default_factory=list, description="Files or folders, relative to sources.yaml.")
    urls: list[str] = Field(default_factory=list, description="Pages fetched over HTTP (kind html).")
    include: list[str] = Field(default_factory=list, description="Glob patterns inside folders; empty = kind default.")
    sensitive: bool = Field(default=False, description="Sensitive data never reaches an external provider.")
    schedule: Literal["nightly", "manual"] = "nightly"
    max_file_mb: float = Field(default=10.0, gt=0, description="Larger files are recorded as failures, not read.")
    description: str = ""
    labels: str = Field(default="", description="A BEIR-format labeled set (queries.jsonl, qrels/<split>.tsv) relative to "
                        "sources.yaml, whose corpus ids are this source's locators: the `evaluation` asset scores against it.")

    def labels_dir(self, base_dir: Path) -> Path | None:
        """The labeled set to evaluate against: `labels`, or a BEIR source's own dataset; None if it has none."""
        if self.labels:
            return (base_dir / self.labels).resolve()
        if self.kind == "beir" and self.paths:
            return (base_dir / self.paths[0]).resolve()
        return None

    @field_validator("urls")
    @classmethod
    def _http_only(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {url!r}")
        return urls

    def resolved_paths(self, base_dir: Path) -> list[Path]:
        return [(base_dir / p).resolve() for p in self.paths]


class SourcesFileError(ValueError):
    """A sources file that cannot be used (missing, unreadable, not YAML, invalid); the message is one line."""


class SourcesFile(BaseModel):
    """The whole file: the sources, and the removals its author confirmed (see `confirm_removal`)."""

    model_config = ConfigDict(extra="forbid")
    sources: list[SourceSpec] = Field(default_factory=list)
    confirm_removal: list[str] = Field(
        default_factory=list,
        description="Sources whose removal is confirmed: the sensor removes more than half of the sources in one "
        "tick only if every one of them is listed here (`rag sources remove NAME` adds it).",
    )

    @field_validator("sources", "confirm_removal", mode="before")
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        return [] if value is None else value  # `sources:` with no entries

    @model_validator(mode="after")
    def _consistent(self) -> "SourcesFile":
        seen: set[str] = set()
        for spec in self.sources:
            if spec.name in seen:
                raise ValueError(f"source {spec.name!r} is declared twice")
            seen.add(spec.name)
        both = sorted(seen & set(self.confirm_removal))
        if both:
            raise ValueError(
                f"{', '.join(map(repr, both))} declared under sources and also listed under confirm_removal "
                "(left from an earlier removal): delete it from confirm_removal"
            )
        return self

    def specs(self) -> dict[str, SourceSpec]:
        return {spec.name: spec for spec in self.sources}


def sources_file_path() -> Path:
    """`$RAG_SOURCES` if set, else `sources.yaml` in the working directory."""
    return Path(os.environ.get("RAG_SOURCES", DEFAULT_SOURCES_FILE)).resolve()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """`YAML syntax error at line 3, column 5: <problem>` for a config file that does not parse."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"YAML syntax error{where}: {problem}"


def error_location(loc: tuple, data: object) -> str:
    """`sources[1] (name 'docs').kind` for a pydantic error location (any YAML list of named entries)."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" (name {node['name']!r})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def parse_sources(text: str, path: Path) -> SourcesFile:
    """Validate the text of a sources file; `SourcesFileError` with one line naming `path` and the problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SourcesFileError(f"{path}: {yaml_problem(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SourcesFileError(f"{path}: expected `sources:` followed by a list of sources, found a {type(data).__name__}")
    try:
        return SourcesFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = first["msg"].removeprefix("Value error, ")
        where = error_location(tuple(first["loc"]), data)
        raise SourcesFileError(f"{path}: {where + ': ' if where else ''}{msg}{more}".replace("\n", " ")) from None


def read_sources_file(path: Path) -> SourcesFile:
    """Read and validate a sources file; `SourcesFileError` if it is missing, unreadable or invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourcesFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourcesFileError(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_sources(text, path)


def load_sources(path: Path) -> dict[str, SourceSpec]:
    """The declared sources by name; `SourcesFileError` if the file is missing, unreadable or invalid."""
    return read_sources_file(path).specs()


def _tree_stats(path: Path) -> list[str]:
    if path.is_file():
        st = path.stat()
        return [f"{path}:{st.st_size}:{st.st_mtime_ns}"]
    if path.is_dir():
        out = []
        for p in sorted(path.rglob("*")):
            if p.is_file():
                st = p.stat()
                out.append(f"{p}:{st.st_size}:{st.st_mtime_ns}")
        return out
    return [f"{path}:missing"]


def source_fingerprint(spec: SourceSpec, base_dir: Path) -> str:
    """Changes when the spec changes or any file under its paths changes (size or mtime).

    URL sources are fingerprinted by spec alone; the nightly schedule re-fetches them.
    """
    parts = [spec.model_dump_json()]
    for path in spec.resolved_paths(base_dir):
        parts.extend(_tree_stats(path))
    return sha256_hex(*parts, length=24)
