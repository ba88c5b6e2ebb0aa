"""Embedding through provider SDKs: OpenAI (`openai`) and Gemini (`google-genai`)."""

from __future__ import annotations

import numpy as np

BATCH = 128


def _normalise(vectors: list[list[float]]) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.where(norms == 0, 1, norms)


def openai_embed(texts: list[str], model: str, api_key: str, base_url: str, timeout_s: float = 60) -> np.ndarray:
    import openai

    client = openai.OpenAI(api_key=api_key or "unused", base_url=base_url or None, max_retries=2, timeout=timeout_s)
    out: list[list[float]] = []
    for start in range(0, len(texts), BATCH):
        resp = client.embeddings.create(model=model, input=texts[start : start + BATCH])
        out.extend(item.embedding for item in sorted(resp.data, key=lambda d: d.index))
    return _normalise(out)


def gemini_embed(texts: list[str], model: str, api_key: str, base_url: str, timeout_s: float = 60) -> np.ndarray:
    from google import genai
    from google.genai import types

    options = types.HttpOptions(base_url=base_url or None, timeout=int(timeout_s * 1000))
    client = genai.Client(api_key=api_key or "unused", http_options=options)
    out: list[list[float]] = []
    for start in range(0, len(texts), BATCH):
        resp = client.models.embed_content(model=model, contents=texts[start : start + BATCH])
        out.extend(e.values for e in resp.embeddings)
    return _normalise(out)
