"""A real `milvus-lite server` on a free loopback port, for tests (the process `rag dev` runs)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag_assets.devserver import free_port, wait_for_port


@contextmanager
def milvus_lite_server(data_dir: Path) -> Iterator[str]:
    """Start the server on `data_dir`; yields its URI; stops it on exit."""
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, 90, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # the server sometimes ignores SIGTERM while it flushes
            proc.kill()
            proc.wait(timeout=30)
