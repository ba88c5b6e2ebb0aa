"""Retrieval quality on SciFact (test split) for every mode, through `rag eval` (the real command)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, require_scifact  # noqa: E402

CACHE = str(Path.home() / ".cache" / "rag-assets" / "embeddings")  # embeddings are cached by (model, text hash)

if __name__ == "__main__":
    root = require_scifact()
    rag = Path(sys.executable).parent / "rag"
    out = {}
    for split in ("test", "train"):
        proc = subprocess.run([str(rag), "eval", "--dataset", str(root), "--mode", "all", "--split", split, "--json", "--cache-dir", CACHE],
                              check=True, capture_output=True, text=True)
        out[split] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["machine"] = machine()
    print(json.dumps(out))
