"""A persistent embedding cache keyed by (model, text hash): an unchanged chunk is never embedded twice.

One SQLite file per model, WAL mode, so concurrent runs (partitions, variants) can share it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np

_SQLITE_MAX_VARS = 900


class EmbeddingCache:
    def __init__(self, path: Path, dim: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.dim = path, dim
        self._conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS vectors (text_hash TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    def get_many(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        keys = list(dict.fromkeys(hashes))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), _SQLITE_MAX_VARS):
            batch = keys[start : start + _SQLITE_MAX_VARS]
            marks = ",".join("?" * len(batch))
            for key, blob in self._conn.execute(f"SELECT text_hash, vector FROM vectors WHERE text_hash IN ({marks})", batch):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == self.dim:
                    found[key] = vec
        return found

    def put_many(self, hashes: list[str], vectors: np.ndarray) -> None:
        rows = [(h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in zip(hashes, vectors)]
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return self._conn.execute("SELECT count(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self._conn.close()
