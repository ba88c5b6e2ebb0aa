"""What the rewrites buy: `rag ask` over the demo source's labeled questions, with and without them.

Starts a fresh `rag dev` stack on the demo source (as `bench/ask_latency.py` does) and asks each labeled question of
`experiments/labels/rag-assets-docs` once per setting, through GraphQL with a fresh `rag ask` process each time, the
settings taking turns question by question (so that the machine's drift falls on all of them alike). Settings are
CLI options added to the defaults: `--setting "no rewrites=--rephrasings 0"`; the first is the reference (by default:
3 rewrites, against the CLI's defaults).

Per setting it prints, over the questions: the sources' quality against the labels (documents in the order their
chunks came, each counted once: nDCG@5, Recall@5, MRR@5, the share with a relevant document among the sources),
how the answers use them (the share citing a relevant document, citing any, saying the sources do not answer), the
answer's tokens and the wall time (p50, p95). Against the reference: the mean paired difference of nDCG@5 with a
bootstrap 95% interval, and how many questions scored higher, lower, the same.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shlex
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ask_latency import percentile, run_cli  # noqa: E402
from bench.common import machine, median  # noqa: E402
from bench.demo_stack import demo_stack  # noqa: E402
from rag_assets.eval.labels import load_labels  # noqa: E402
from rag_assets.eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k  # noqa: E402

LABELS = ROOT / "experiments" / "labels" / "rag-assets-docs"
K = 5  # the CLI's top_k: the sources the answer is given
CITATION = re.compile(r"\[(\d+)\]")
NO_ANSWER = re.compile(r"(do|does) not (contain|provide|mention|say)|don't (contain|provide|mention)|no information", re.I)


def locator(link: str) -> str:
    """A source's document as the labels name it: its path relative to the project (the demo source's folder)."""
    path = Path(unquote(urlparse(link).path))
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def documents(sources: list[dict]) -> list[str]:
    """The sources' documents in the order of their first chunk, each once."""
    return list(dict.fromkeys(locator(s["link"]) for s in sources))


def cited_documents(answer: str, sources: list[dict]) -> set[str]:
    return {locator(sources[int(n) - 1]["link"]) for n in CITATION.findall(answer) if 1 <= int(n) <= len(sources)}


def score(out: dict, relevant: dict[str, int]) -> dict:
    """One answer's scores against its question's labels."""
    docs, cited = documents(out["sources"]), cited_documents(out["answer"], out["sources"])
    return {"ndcg@5": ndcg_at_k(docs, relevant, K), "recall@5": recall_at_k(docs, relevant, K), "mrr@5": mrr_at_k(docs, relevant, K),
            "relevant_among_sources": float(any(relevant.get(d, 0) > 0 for d in docs)),
            "cites_relevant": float(any(relevant.get(d, 0) > 0 for d in cited)), "cites_any": float(bool(cited)),
            "says_no_answer": float(bool(NO_ANSWER.search(out["answer"]))),
            "answer_tokens": float(out.get("llm", {}).get("llm_tokens_out", 0))}


def bootstrap_mean_ci(diffs: list[float], rounds: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of paired differences (percentile bootstrap over questions)."""
    rng, n = random.Random(seed), len(diffs)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def summary(rows: list[dict]) -> dict:
    out = {k: round(sum(r["scores"][k] for r in rows) / len(rows), 4) for k in rows[0]["scores"]}
    walls = [r["wall_s"] for r in rows]
    return {**out, "wall_p50_s": round(median(walls), 2), "wall_p95_s": round(percentile(walls, 0.95), 2)}


def paired(reference: list[dict], other: list[dict], key: str = "ndcg@5") -> dict:
    diffs = [o["scores"][key] - r["scores"][key] for r, o in zip(reference, other)]
    low, high = bootstrap_mean_ci(diffs)
    return {"metric": key, "mean_diff": round(sum(diffs) / len(diffs), 4), "ci95": [round(low, 4), round(high, 4)],
            "higher": sum(d > 1e-9 for d in diffs), "lower": sum(d < -1e-9 for d in diffs), "same": sum(abs(d) <= 1e-9 for d in diffs)}


def parse_setting(text: str) -> tuple[str, list[str]]:
    name, _, options = text.partition("=")
    return name.strip(), shlex.split(options)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--setting", action="append", type=parse_setting,
                        help='NAME=CLI OPTIONS added to the defaults, e.g. "no rewrites=--rephrasings 0" (repeatable; the first is the reference)')
    parser.add_argument("--limit", type=int, default=0, help="only the first N labeled questions")
    args = parser.parse_args()
    settings = args.setting or [("3 rewrites", ["--rephrasings", "3"]), ("defaults", [])]
    labels = load_labels(LABELS)
    judged = [q for q in labels.queries if q in labels.qrels][: args.limit or None]
    rows: dict[str, list[dict]] = {name: [] for name, _ in settings}
    started = time.perf_counter()
    with demo_stack() as (stack, env):
        run_cli([labels.queries[judged[0]], "--url", stack.url, "--max-tokens", "1"], env)  # warms the run worker: not scored
        for qid in judged:
            for name, options in settings:
                out, wall = run_cli([labels.queries[qid], "--url", stack.url, *options], env)
                rows[name].append({"question": qid, "wall_s": round(wall, 3), "scores": score(out, labels.qrels[qid]),
                                   "rephrasings": out.get("rephrasings", []), "documents": documents(out["sources"]),
                                   "answer": out["answer"]})
    reference = settings[0][0]
    print(json.dumps({
        "questions": len(judged), "settings": {name: options for name, options in settings}, "reference": reference,
        "summary": {name: summary(r) for name, r in rows.items()},
        "paired_vs_reference": {name: {k: paired(rows[reference], r, k) for k in ("ndcg@5", "cites_relevant")}
                                for name, r in rows.items() if name != reference},
        "elapsed_s": round(time.perf_counter() - started, 1), "machine": machine(), "rows": rows}))


if __name__ == "__main__":
    main()
