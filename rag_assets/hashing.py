"""Content hashes used as ids everywhere (never positional ids)."""

from __future__ import annotations

import hashlib


def sha256_hex(*parts: str | bytes, length: int = 64) -> str:
    """Hash the parts, unambiguously separated, to a hex digest of `length` characters."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:length]


def text_hash(text: str) -> str:
    """The hash of a text alone: the embedding cache key (with the model id)."""
    return sha256_hex(text, length=32)
