"""A persistent embedding cache keyed by (model, text hash): an unchanged chunk is never embedded twice.

One SQLite file per model, WAL mode, so concurrent runs (partitions, variants) can share it. Entries
are forgotten with `secure_delete` and a truncated WAL, so a purged text's vector leaves the file.
"""

from __future__ import annotations

import sqlite3
import time
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


def truncate_wal(conn: sqlite3.Connection, timeout_s: float = 60) -> None:
    """Checkpoint the WAL into the database and truncate it to zero bytes (retried while readers hold it)."""
    deadline = time.monotonic() + timeout_s
    while conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
        if time.monotonic() > deadline:
            raise TimeoutError("the SQLite WAL stayed busy; its old pages may still hold deleted rows")
        time.sleep(0.2)


def forget_hashes(path: Path, hashes: Iterable[str]) -> int:
    """Delete cache entries of `path` byte for byte (secure_delete zeroes the freed space, the WAL is
    truncated); returns how many there were."""
    keys = list(dict.fromkeys(hashes))
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    try:
        conn.execute("PRAGMA secure_delete=ON")
        deleted = 0
        for start in range(0, len(keys), _SQLITE_MAX_VARS):
            batch = keys[start : start + _SQLITE_MAX_VARS]
            deleted += conn.execute(f"DELETE FROM vectors WHERE text_hash IN ({','.join('?' * len(batch))})", batch).rowcount
        if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            truncate_wal(conn)
        return deleted
    finally:
        conn.close()


def forget_everywhere(root: Path, hashes: set[str]) -> int:
    """`forget_hashes` on every cache file under `root`: every model's, every variant's (a text is cached once per
    model and ingestion setting)."""
    if not hashes or not root.is_dir():
        return 0
    return sum(forget_hashes(path, hashes) for path in sorted(root.rglob("*.sqlite")))
