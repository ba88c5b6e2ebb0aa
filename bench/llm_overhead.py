"""The LLM resource's own overhead vs a bare SDK call to the same loopback server.

Two servers: the loopback OpenAI-shaped server from tests/loopback (answers in about a millisecond,
so any overhead shows) and llama.cpp's server with the bundled model (a realistic call). Calls
alternate bare / resource to cancel drift; medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import openai  # noqa: E402

from bench.common import machine, median  # noqa: E402
from llama_server import llama_server  # noqa: E402
from loopback.openai_faults import OpenAIFaultServer  # noqa: E402
from resources.llm import LLMResource  # noqa: E402


def compare(base_url: str, model: str, n: int, prompt: str, max_tokens: int, api: str) -> dict:
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
    resource = LLMResource(provider="openai", model=model, base_url=base_url, external=False, openai_api=api, openai_api_key="x")

    def bare():
        if api == "completions":
            client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0.0)
        else:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0.0)

    def ours():
        resource.complete(prompt, max_tokens=max_tokens, temperature=0.0)

    bare(), ours()  # warm both clients
    t_bare, t_ours = [], []
    for _ in range(n):
        for fn, out in ((bare, t_bare), (ours, t_ours)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    mb, mo = median(t_bare), median(t_ours)
    return {"calls": n, "bare_median_ms": round(mb * 1000, 3), "resource_median_ms": round(mo * 1000, 3),
            "overhead_ms": round((mo - mb) * 1000, 3), "overhead_pct": round((mo / mb - 1) * 100, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--n-llama", type=int, default=20)
    args = parser.parse_args()
    with OpenAIFaultServer() as server:
        fast = compare(server.base_url + "/v1", "m", args.n, "What is an asset?", 16, "chat")
    with llama_server(alias="gemma-local") as base_url:
        real = compare(base_url, "gemma-local", args.n_llama, "Question: What is a data asset?\nAnswer:", 16, "completions")
    print(json.dumps({"loopback_openai_shaped_server": fast, "llama_cpp_server": real, "machine": machine()}))


if __name__ == "__main__":
    main()
