"""The document row every loader produces, and the load result with its failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import polars as pl

from rag_assets.hashing import sha256_hex, text_hash

DOCUMENT_SCHEMA: dict[str, pl.DataType] = {
    "doc_id": pl.String(),
    "source": pl.String(),
    "locator": pl.String(),
    "link": pl.String(),
    "title": pl.String(),
    "text": pl.String(),
    "content_hash": pl.String(),
    "updated_at": pl.Datetime("us", "UTC"),
    "sensitive": pl.Boolean(),
    "error": pl.String(),
}


def make_doc_id(source: str, locator: str) -> str:
    """A document id stable across content changes: source name + where the document lives."""
    return sha256_hex(source, locator, length=32)


@dataclass(frozen=True)
class Document:
    """One document of a source. `locator` is its stable address (relative path, URL, issue number)."""

    source: str
    locator: str
    link: str
    title: str
    text: str
    updated_at: datetime | None = None

    def row(self, sensitive: bool) -> dict:
        return {
            "doc_id": make_doc_id(self.source, self.locator),
            "source": self.source,
            "locator": self.locator,
            "link": self.link,
            "title": self.title,
            "text": self.text,
            "content_hash": text_hash(self.title + "\n" + self.text),
            "updated_at": self.updated_at or datetime.now(timezone.utc),
            "sensitive": sensitive,
            "error": None,
        }


@dataclass(frozen=True)
class Failure:
    """An input that could not be loaded, and why (recorded in metadata, never fatal)."""

    source: str
    locator: str
    link: str
    reason: str

    def row(self, sensitive: bool) -> dict:
        return {
            "doc_id": make_doc_id(self.source, self.locator),
            "source": self.source,
            "locator": self.locator,
            "link": self.link,
            "title": self.locator,
            "text": "",
            "content_hash": "",
            "updated_at": datetime.now(timezone.utc),
            "sensitive": sensitive,
            "error": self.reason,
        }


@dataclass
class LoadResult:
    """What a loader returns: the documents it read and the inputs it could not read."""

    documents: list[Document] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def extend(self, other: "LoadResult") -> None:
        self.documents.extend(other.documents)
        self.failures.extend(other.failures)

    def to_frame(self, sensitive: bool) -> pl.DataFrame:
        """One row per document and per failure (failures have `error` set and no text)."""
        rows = [d.row(sensitive) for d in self.documents] + [f.row(sensitive) for f in self.failures]
        frame = pl.DataFrame(rows, schema=DOCUMENT_SCHEMA)
        # A document listed twice (e.g. the same URL twice) keeps its first occurrence.
        return frame.unique(subset="doc_id", keep="first", maintain_order=True)
