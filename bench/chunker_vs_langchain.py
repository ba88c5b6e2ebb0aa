"""Chunker speed: our Chunker (semantic-text-splitter) vs LangChain's RecursiveCharacterTextSplitter.

Same texts (the SciFact corpus), same tokenizer (the embedding model's), same chunk size and overlap.
Prints the median of several runs of each and the ratio. Our side does more work (title prefixes,
heading paths, token counts, content-hash ids), so the ratio is conservative. The bare splitter
(semantic-text-splitter's `chunk_all` alone: one capacity, no title lines, ids or counts) is timed too:
its ratio to LangChain bounds ours, which splits each text with less room (its title's tokens are kept
free) and so makes more chunks. Each repeat runs the three in turn, so a busy machine slows them alike; the
load average is printed beside the figures (ours uses every core through Rust threads, LangChain one, so a
machine busy with other work narrows the ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, median, require_scifact, timer  # noqa: E402
from rag_assets.chunking import Chunker, ChunkSettings  # noqa: E402
from rag_assets.sources.beir import load_beir  # noqa: E402
from rag_assets.sources.spec import SourceSpec  # noqa: E402
from rag_assets.embedding import bundled  # noqa: E402

MODEL = "all-MiniLM-L6-v2"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = require_scifact()
    docs = load_beir(SourceSpec(name="scifact", kind="beir", paths=[str(root)]), root).to_frame(False)
    texts = docs["text"].to_list()
    settings = ChunkSettings(max_tokens=256, overlap=32)
    capacity = settings.max_tokens - 2

    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from semantic_text_splitter import MarkdownSplitter
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tokenizer = bundled.load_tokenizer(MODEL)
    untruncated = Tokenizer.from_str(tokenizer.to_str())  # as the Chunker does: a truncating sizer would see every text fit
    untruncated.no_truncation()
    untruncated.no_padding()
    hf_tok = AutoTokenizer.from_pretrained(str(bundled.local_model_dir(MODEL)), local_files_only=True)
    ours: list[float] = []
    bare: list[float] = []
    theirs: list[float] = []
    load = [round(os.getloadavg()[0], 1)]
    for _ in range(args.repeat):
        with timer(ours):
            frame = Chunker(tokenizer, settings, 256).chunk_frame(docs)
        with timer(bare):
            bare_chunks = MarkdownSplitter.from_huggingface_tokenizer(untruncated, capacity, overlap=settings.overlap).chunk_all(texts)
        with timer(theirs):
            splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(hf_tok, chunk_size=capacity, chunk_overlap=settings.overlap)
            lc_chunks = [c for t in texts for c in splitter.split_text(t)]
        load.append(round(os.getloadavg()[0], 1))

    result = {
        "texts": len(texts),
        "ours_chunks": frame.height,
        "langchain_chunks": len(lc_chunks),
        "ours_median_s": round(median(ours), 2),
        "langchain_median_s": round(median(theirs), 2),
        "speedup": round(median(theirs) / median(ours), 2),
        "bare_splitter_chunks": sum(map(len, bare_chunks)),
        "bare_splitter_median_s": round(median(bare), 2),
        "bare_splitter_speedup": round(median(theirs) / median(bare), 2),
        "runs": args.repeat,
        "load_average_per_repeat": load,
        "ours_s": [round(t, 2) for t in ours],
        "bare_splitter_s": [round(t, 2) for t in bare],
        "langchain_s": [round(t, 2) for t in theirs],
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
