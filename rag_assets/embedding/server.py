"""An embedding server for the bundled models: load once per long-lived process, serve every run.

`rag dev` starts it beside Milvus (`python -m rag_assets.embedding.server --port P --model all-MiniLM-L6-v2`);
runs whose `Embedder.server_url` (or `$RAG_EMBEDDER_URL`) points at it embed over HTTP instead of loading the
model themselves. The protocol is OpenAI's `/v1/embeddings` with vectors as base64 float32
(`encoding_format: base64`), plus `input_type` ("query" or "passage") for models that prefix queries (e5),
and `GET /health` listing the models loaded. In production the same client can point at any server that
speaks it for the same model.
"""

from __future__ import annotations

import argparse
import asyncio
import base64

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rag_assets.embedding import bundled

MAX_INPUTS = 4096


def encode_vectors(vectors: np.ndarray) -> list[dict]:
    """OpenAI's `data` list with base64 little-endian float32 vectors."""
    return [{"object": "embedding", "index": i, "embedding": base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode()}
            for i, v in enumerate(vectors)]


def decode_vectors(data: list[dict], dimension: int) -> np.ndarray:
    """The inverse of `encode_vectors`, in `index` order."""
    rows = sorted(data, key=lambda d: d["index"])
    if not rows:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in rows]).astype(np.float32)


def create_app(models: list[str], device: str = "auto", batch_size: int = 64, precision: str = "auto") -> Starlette:
    """The app, with `models` loaded (and warmed on one text) before it serves; `precision` as `bundled.encode`'s."""
    precisions = {model: bundled.resolve_precision(model, device, precision) for model in models}
    for model in models:
        bundled.encode(model, ["warm up"], device, batch_size, precision=precision)
    lock = asyncio.Lock()  # one encode at a time: the model already uses every core
    served = {"requests": 0, "texts": 0}

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "models": models, "precision": precisions, **served})

    async def embeddings(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": {"message": "the body is not JSON"}}, status_code=400)
        model, inputs = body.get("model"), body.get("input")
        if model not in models:
            return JSONResponse({"error": {"message": f"model {model!r} is not served here (serving {models})"}}, status_code=404)
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs) or len(inputs) > MAX_INPUTS:
            return JSONResponse({"error": {"message": f"`input` must be a string or a list of at most {MAX_INPUTS} strings"}}, status_code=400)
        query = body.get("input_type") == "query"
        async with lock:
            vectors = await asyncio.to_thread(bundled.encode, model, inputs, device, batch_size, query, precision)
            served["requests"] += 1
            served["texts"] += len(inputs)
        return JSONResponse({"object": "list", "model": model, "data": encode_vectors(vectors),
                             "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    return Starlette(routes=[Route("/health", health), Route("/v1/embeddings", embeddings, methods=["POST"])])


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", action="append", dest="models", help="a bundled model to serve (repeatable)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=bundled.PRECISIONS)
    args = parser.parse_args(argv)
    app = create_app(args.models or ["all-MiniLM-L6-v2"], args.device, precision=args.precision)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
