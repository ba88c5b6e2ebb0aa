"""Variants: named sets of pipeline settings, and the registry that maps a variant name to its settings.

A variant is the second dimension of the ingestion assets' partitions (`source|variant`). Its settings
are read from the registry by name in every process (sensors, run workers, the CLI), so a partition key
alone says what was built. The `default` variant is built in (today's settings) and never stored.
Settings of a registered name never change: a different setting is a different variant.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rag_assets.hashing import sha256_hex
from rag_assets.settings import rag_home

DEFAULT_VARIANT = "default"
VARIANT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,39}$"
INGESTION_FIELDS = ("chunk_max_tokens", "chunk_overlap", "embedding_model")


class VariantError(ValueError):
    """A variant that is unknown, invalid or conflicts with a registered one; the message is one line."""


class VariantSettings(BaseModel):
    """What a variant changes. Ingestion settings (chunking, embedding model) decide what is stored;
    retrieval and LLM settings only how the stored index is queried, so variants that differ only there
    share one index."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default=DEFAULT_VARIANT, pattern=VARIANT_NAME_PATTERN)
    description: str = ""
    chunk_max_tokens: int = Field(default=256, ge=16, le=8192, description="Chunk size in model tokens.")
    chunk_overlap: int = Field(default=32, ge=0, description="Tokens shared by neighbouring chunks.")
    embedding_model: str = Field(default="", description="A bundled local model name, or `provider/model`; empty = the configured embedder.")
    retrieval_mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    fusion: Literal["auto", "weighted", "rrf", "ranker"] = "auto"
    dense_weight: float = Field(default=0.7, ge=0.0, le=1.0, description="`weighted` fusion only.")
    top_k: int = Field(default=5, ge=1, le=100, description="Chunks given to the LLM.")
    n_rephrasings: int = Field(default=3, ge=0, le=8)
    llm_provider: str = Field(default="", description="Pin an LLM provider; empty = the routing policy decides.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> "VariantSettings":
        if self.chunk_overlap >= self.chunk_max_tokens:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be below chunk_max_tokens ({self.chunk_max_tokens})")
        return self

    def ingestion(self) -> dict:
        """The settings that change stored data (Parquet, cache, collection)."""
        return {k: getattr(self, k) for k in INGESTION_FIELDS}

    def ingest_key(self) -> str:
        """'' for the default ingestion settings (today's storage names), else a short hash of them:
        two variants with the same ingestion settings share their stored data."""
        if self.ingestion() == VariantSettings().ingestion():
            return ""
        return sha256_hex(json.dumps(self.ingestion(), sort_keys=True), length=10)

    def settings(self) -> dict:
        """Everything but the name, for metadata and comparison."""
        return self.model_dump(exclude={"name", "description"})


DEFAULT_SETTINGS = VariantSettings()


def registry_path() -> Path:
    """`$RAG_VARIANTS`, else `$RAG_HOME/variants.yaml`."""
    return Path(os.environ.get("RAG_VARIANTS") or rag_home() / "variants.yaml")


def load_registry(path: Path | None = None) -> dict[str, VariantSettings]:
    """Registered variants by name (the default one included)."""
    path = path or registry_path()
    found = {DEFAULT_VARIANT: DEFAULT_SETTINGS}
    if not path.is_file():
        return found
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, settings in (data.get("variants") or {}).items():
            found[name] = VariantSettings(name=name, **(settings or {}))
    except (yaml.YAMLError, ValidationError, AttributeError, TypeError) as exc:
        raise VariantError(f"{path}: not a valid variants registry ({str(exc).splitlines()[0]}); fix or remove the file") from exc
    return found


def get_variant(name: str, path: Path | None = None) -> VariantSettings:
    """The settings of a registered variant; `VariantError` naming the fix if it is unknown."""
    registry = load_registry(path)
    if name not in registry:
        raise VariantError(f"variant {name!r} is not registered in {path or registry_path()}: "
                           "`rag experiment run FILE` registers the variants an experiment names")
    return registry[name]


def register(variants: list[VariantSettings], path: Path | None = None) -> list[str]:
    """Add variants to the registry; returns the names that were new. A name already registered with
    other settings is refused (its history would mix two configurations)."""
    path = path or registry_path()
    registry = load_registry(path)
    new = []
    for variant in variants:
        known = registry.get(variant.name)
        if known is not None:
            if known.settings() != variant.settings():
                changed = sorted(k for k, v in variant.settings().items() if known.settings()[k] != v)
                raise VariantError(f"variant {variant.name!r} is registered with other settings ({', '.join(changed)}): "
                                   "give the new settings a new variant name")
            continue
        registry[variant.name] = variant
        new.append(variant.name)
    if new:
        _write(path, registry)
    return new


def unregister(names: list[str], path: Path | None = None) -> list[str]:
    """Remove variants from the registry (never the default); returns those removed."""
    path = path or registry_path()
    registry = load_registry(path)
    removed = [n for n in names if n in registry and n != DEFAULT_VARIANT]
    for name in removed:
        del registry[name]
    if removed:
        _write(path, registry)
    return removed


def _write(path: Path, registry: dict[str, VariantSettings]) -> None:
    stored = {name: v.model_dump(exclude={"name"}, exclude_defaults=True) for name, v in sorted(registry.items()) if name != DEFAULT_VARIANT}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text("# Registered variants (written by `rag experiment run`; a name's settings never change)\n"
                   + yaml.safe_dump({"variants": stored}, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
