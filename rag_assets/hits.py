"""A retrieved chunk: what retrieval returns and fusion, ranking and answers consume."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    doc_id: str
    source: str
    title: str
    link: str
    text: str
    heading_path: str
    score: float
    sensitive: bool
