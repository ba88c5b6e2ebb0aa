"""The local provider (bundled Gemma 3 270M on llama.cpp, CPU unless built with a GPU backend):
prompt tokens/s, generated tokens/s, and the latency of a rephrase call through the LLM resource.
Medians of --repeat runs after one warm-up call."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, median  # noqa: E402
from rag_assets.llm.local_model import gguf_path, load_llama  # noqa: E402
from resources.llm import LLMResource  # noqa: E402

LONG = " ".join(["Dagster models data pipelines as software-defined assets with lineage and metadata."] * 40)
QUESTIONS = ["How do I add a new source?", "What does the index asset store?", "Why run a Milvus Lite server in dev?",
             "How are chunk ids computed?", "Which executor runs on Kubernetes?", "What happens to a removed document?"]
REPHRASE = "Rewrite the question with different words.\nQuestion: {q}\nRewritten question:"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    llm, _ = load_llama(str(gguf_path()), 4096)
    llm.create_completion("warm up", max_tokens=4)

    prompt_tps, gen_tps, n_prompt = [], [], 0
    for i in range(args.repeat):
        llm.reset()  # no prompt cache between runs
        out, t_prompt = timed(lambda: llm.create_completion(LONG + f" {i}", max_tokens=1, temperature=0.0))
        n_prompt = out["usage"]["prompt_tokens"]
        prompt_tps.append(n_prompt / t_prompt)
        llm.reset()
        out, t_total = timed(lambda: llm.create_completion(f"Once upon a time {i}", max_tokens=64, temperature=0.0))
        llm.reset()
        _, t_first = timed(lambda: llm.create_completion(f"Once upon a time {i}", max_tokens=1, temperature=0.0))
        n_out = out["usage"]["completion_tokens"]
        if n_out > 1 and t_total > t_first:
            gen_tps.append((n_out - 1) / (t_total - t_first))

    resource = LLMResource()
    resource.complete(REPHRASE.format(q="warm up"), tier="fast", max_tokens=32, stop=["\n"])
    latencies = []
    for i in range(args.repeat):
        q = QUESTIONS[i % len(QUESTIONS)]
        _, t = timed(lambda: resource.complete(REPHRASE.format(q=q), tier="fast", max_tokens=32, stop=["\n"]))
        latencies.append(t)
    print(json.dumps({
        "model": "gemma-3-270m-q4_k_m (llama.cpp)",
        "prompt_tokens": n_prompt,
        "prompt_tokens_per_s": round(median(prompt_tps), 1),
        "generated_tokens_per_s": round(median(gen_tps), 1) if gen_tps else None,
        "rephrase_latency_median_s": round(median(latencies), 3),
        "rephrase_latency_s": [round(x, 3) for x in latencies],
        "runs": args.repeat,
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
