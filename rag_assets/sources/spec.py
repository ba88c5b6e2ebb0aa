"""Source specs: what `sources.yaml` declares, and a fingerprint that changes when a source does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

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

    @field_validator("urls")
    @classmethod
    def _http_only(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {url!r}")
        return urls

    def resolved_paths(self, base_dir: Path) -> list[Path]:
        return [(base_dir / p).resolve() for p in self.paths]


class SourcesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: list[SourceSpec] = Field(default_factory=list)


def sources_file_path() -> Path:
    """`$RAG_SOURCES` if set, else `sources.yaml` in the working directory."""
    return Path(os.environ.get("RAG_SOURCES", DEFAULT_SOURCES_FILE)).resolve()


def load_sources(path: Path) -> dict[str, SourceSpec]:
    """Parse and validate a sources file; names must be unique."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    parsed = SourcesFile.model_validate(data)
    specs: dict[str, SourceSpec] = {}
    for spec in parsed.sources:
        if spec.name in specs:
            raise ValueError(f"{path}: source {spec.name!r} is declared twice")
        specs[spec.name] = spec
    return specs


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
