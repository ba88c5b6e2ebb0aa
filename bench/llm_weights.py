"""The bundled LLM's weights and llama.cpp options: speed against the file as shipped, and what they change in its output.

Configurations (each its own `llama_cpp.Llama`, the machine's threads as `rag dev` sets them):
- `bundled`: the package's Q4_K_M GGUF with llama.cpp's default options (what runs loaded before);
- `bundled+options`: the same file with `local_model.RUNTIME` (flash attention, 1,024-token batches);
- `f16+options`: the widened copy (`gguf_widen`: F16 matrices, Q8_0 embeddings) with those options (the default now).

Speed: reading a prompt of `--prompt-tokens` tokens (documentation text, cache reset each time) and greedily
generating `--gen-tokens` after it; medians of `--repeat`, configurations taking turns, ratios against `bundled`.
Fidelity: next-token distributions over three documentation texts against `bundled` (mean and p99 KL divergence,
top-1 agreement) and each one's perplexity on them. The same file run twice with different options differs too
(`bundled+options` against `bundled`): that is the yardstick for the widened file's difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, median  # noqa: E402
from rag_assets.llm.local_model import RUNTIME, bundled_gguf_path, llm_threads, widened_gguf_path  # noqa: E402

TEXTS = [ROOT / "docs" / "inference.md", ROOT / "README.md", ROOT / "docs" / "benchmarks.md"]


def configurations() -> dict[str, tuple[Path, dict]]:
    return {"bundled": (bundled_gguf_path(), {}), "bundled+options": (bundled_gguf_path(), RUNTIME),
            "f16+options": (widened_gguf_path(), RUNTIME)}


def load(path: Path, options: dict, **extra):
    from llama_cpp import Llama

    threads = llm_threads()
    return Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False, **{**options, **extra})


def speed(llms: dict, prompt_tokens: int, gen_tokens: int, repeat: int) -> dict:
    text = TEXTS[0].read_text()
    times: dict[str, dict[str, list[float]]] = {name: {"prompt": [], "gen": []} for name in llms}
    tokens = {name: llm.tokenize(text.encode())[:prompt_tokens] for name, llm in llms.items()}
    for _ in range(repeat):
        for name, llm in llms.items():  # configurations take turns, so drift in the machine's speed hits them alike
            llm.reset()
            start = time.perf_counter()
            llm.eval(tokens[name])
            times[name]["prompt"].append(time.perf_counter() - start)
            start, made = time.perf_counter(), 0
            for _token in llm.generate([], temp=0, reset=False):
                made += 1
                if made == gen_tokens:
                    break
            times[name]["gen"].append(time.perf_counter() - start)
    out = {}
    for name, t in times.items():
        p, g = median(t["prompt"]), median(t["gen"])
        out[name] = {"prompt_s": round(p, 3), "prompt_tok_s": round(len(tokens[name]) / p, 1), "gen_s": round(g, 3),
                     "gen_tok_s": round(gen_tokens / g, 1), "prompt_s_all": [round(x, 3) for x in t["prompt"]]}
    base = out["bundled"]
    for row in out.values():
        row["prompt_speedup_vs_bundled"] = round(base["prompt_s"] / row["prompt_s"], 2)
        row["gen_speedup_vs_bundled"] = round(base["gen_s"] / row["gen_s"], 2)
    return out


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def next_token_logs(path: Path, options: dict, n_tokens: int) -> list[tuple[np.ndarray, list[int]]]:
    llm = load(path, options, logits_all=True)  # every position's distribution (only for this measurement)
    out = []
    for text in TEXTS:
        tokens = llm.tokenize(text.read_text()[:8000].encode())[:n_tokens]
        llm.reset()
        llm.eval(tokens)
        out.append((log_softmax(np.asarray(llm.scores[: len(tokens)], dtype=np.float64)), tokens))
    del llm
    return out


def fidelity(configs: dict[str, tuple[Path, dict]], n_tokens: int) -> dict:
    reference = next_token_logs(*configs["bundled"], n_tokens)
    out = {}
    for name, (path, options) in configs.items():
        got = reference if name == "bundled" else next_token_logs(path, options, n_tokens)
        kl, agree, nll = [], [], []
        for (ref, tokens), (logp, _) in zip(reference, got):
            kl.append((np.exp(ref) * (ref - logp)).sum(-1))
            agree.append(ref.argmax(-1) == logp.argmax(-1))
            nll.append(-logp[np.arange(len(tokens) - 1), tokens[1:]])
        k = np.concatenate(kl)
        out[name] = {"kl_mean": round(float(k.mean()), 5), "kl_p99": round(float(np.quantile(k, 0.99)), 4),
                     "top1_agreement": round(float(np.concatenate(agree).mean()), 4),
                     "perplexity": round(float(np.exp(np.concatenate(nll).mean())), 3), "positions": int(k.size)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt-tokens", type=int, default=700, help="about an answer prompt's length with the CLI's defaults")
    parser.add_argument("--gen-tokens", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--fidelity-tokens", type=int, default=512, help="tokens of each text scored")
    args = parser.parse_args()
    configs = configurations()
    files = {name: {"file": path.name, "mib": round(path.stat().st_size / 2**20, 1)} for name, (path, _) in configs.items()}
    llms = {name: load(path, options) for name, (path, options) in configs.items()}
    fast = speed(llms, args.prompt_tokens, args.gen_tokens, args.repeat)
    del llms
    print(json.dumps({"threads": llm_threads(), "runtime_options": RUNTIME, "files": files, "speed": fast,
                      "fidelity_vs_bundled": fidelity(configs, args.fidelity_tokens), "machine": machine()}))


if __name__ == "__main__":
    main()
