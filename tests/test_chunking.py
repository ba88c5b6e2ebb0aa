"""The chunker: token limits by the model's tokenizer, Markdown structure, stable content-hash ids."""

import hashlib
import json
import os
import random
import re
import subprocess
from pathlib import Path

import polars as pl
import pytest

from rag_assets.chunking import CHUNK_SCHEMA, Chunker, ChunkSettings, heading_path_at, heading_spans
from rag_assets.sources.document import DOCUMENT_SCHEMA
from rag_assets.embedding import bundled

MODEL = "all-MiniLM-L6-v2"


def docs(rows: list[dict]) -> pl.DataFrame:
    base = {"doc_id": "d", "source": "s", "locator": "x", "link": "", "title": "", "text": "", "content_hash": "",
            "updated_at": None, "sensitive": False, "error": None}
    return pl.DataFrame([{**base, **r} for r in rows], schema=DOCUMENT_SCHEMA)


@pytest.fixture(scope="module")
def tokenizer():
    return bundled.load_tokenizer(MODEL)


def test_chunks_respect_the_token_limit_counted_with_special_tokens(tokenizer):
    text = "\n\n".join(f"Paragraph {i}. " + "Milvus stores dense and sparse vectors for hybrid search. " * 6 for i in range(40))
    chunker = Chunker(tokenizer, ChunkSettings(max_tokens=64, overlap=8), bundled.model_max_tokens(MODEL))
    frame = chunker.chunk_frame(docs([{"doc_id": "d1", "title": "Vectors", "text": text}]))
    assert frame.height > 10
    assert frame["n_tokens"].max() <= 64
    recount = [len(chunker.tokenizer.encode(t).ids) for t in frame["text"].to_list()]
    assert recount == frame["n_tokens"].to_list()
    assert all(t.startswith("Vectors\n\n") for t in frame["text"].to_list())


def test_limit_is_capped_by_the_model_max_sequence_length(tokenizer):
    chunker = Chunker(tokenizer, ChunkSettings(max_tokens=4096, overlap=0), bundled.model_max_tokens(MODEL))
    assert chunker.limit == 256


def test_heading_path_ignores_code_fences():
    text = "# Guide\n\nintro\n\n## Install\n\n```bash\n# not a heading\n```\n\n### Linux\n\nsteps\n"
    spans = heading_spans(text)
    assert [s[2] for s in spans] == ["Guide", "Install", "Linux"]
    assert heading_path_at(spans, text.index("steps")) == "Guide > Install > Linux"
    assert heading_path_at(spans, text.index("intro")) == "Guide"


def test_ids_are_content_hashes_stable_and_setting_dependent(tokenizer):
    frame_in = docs([{"doc_id": "d1", "title": "T", "text": "# T\n\nalpha beta"}, {"doc_id": "d2", "title": "U", "text": "gamma"}])
    a = Chunker(tokenizer, ChunkSettings(64, 0)).chunk_frame(frame_in)
    b = Chunker(tokenizer, ChunkSettings(64, 0)).chunk_frame(frame_in.reverse())
    c = Chunker(tokenizer, ChunkSettings(48, 0)).chunk_frame(frame_in)
    assert set(a["chunk_id"]) == set(b["chunk_id"])
    assert set(a["chunk_id"]).isdisjoint(set(c["chunk_id"]))
    assert a["chunk_id"].n_unique() == a.height


def test_failed_and_empty_documents_make_no_chunks(tokenizer):
    frame = Chunker(tokenizer, ChunkSettings()).chunk_frame(
        docs([{"doc_id": "bad", "error": "binary file"}, {"doc_id": "empty", "text": "  \n "}, {"doc_id": "ok", "text": "hello"}])
    )
    assert frame["doc_id"].to_list() == ["ok"]


def test_a_changed_sensitivity_or_position_is_a_new_id_so_milvus_rows_never_go_stale(tokenizer):
    chunker = Chunker(tokenizer, ChunkSettings(64, 0))
    base = chunker.chunk_frame(docs([{"doc_id": "d1", "title": "T", "text": "alpha beta"}]))
    flipped = chunker.chunk_frame(docs([{"doc_id": "d1", "title": "T", "text": "alpha beta", "sensitive": True}]))
    moved = chunker.chunk_frame(docs([{"doc_id": "d1", "title": "T", "text": "new intro paragraph\n\n" + "filler " * 80 + "\n\nalpha beta"}]))
    assert set(base["chunk_id"]).isdisjoint(flipped["chunk_id"])
    assert flipped["sensitive"].to_list() == [True]
    assert "alpha beta" in moved["text"].to_list()[-1] and base["chunk_id"][0] not in set(moved["chunk_id"])


def test_every_chunk_of_a_markdown_document_carries_its_title(tokenizer):
    text = "# Runbook\n\n" + "\n\n".join(f"## Step {i}\n\n" + "Restart the service and check the logs. " * 8 for i in range(6))
    frame = Chunker(tokenizer, ChunkSettings(64, 0)).chunk_frame(docs([{"doc_id": "d", "title": "Runbook", "text": text}]))
    assert frame.height > 3
    assert all(t.startswith("Runbook") or t.startswith("# Runbook") for t in frame["text"].to_list())


def test_previous_chunks_are_reused_for_unchanged_documents(tokenizer):
    chunker = Chunker(tokenizer, ChunkSettings(64, 0))
    frame_in = docs([{"doc_id": "a", "title": "A", "text": "alpha", "content_hash": "h1"},
                     {"doc_id": "b", "title": "B", "text": "beta", "content_hash": "h2"}])
    first = chunker.chunk_frame(frame_in)
    tampered = first.with_columns(pl.when(pl.col("doc_id") == "a").then(pl.lit("from previous")).otherwise(pl.col("text")).alias("text"))
    second = chunker.chunk_frame(frame_in.with_columns(pl.when(pl.col("doc_id") == "b").then(pl.lit("h3")).otherwise(pl.col("content_hash")).alias("content_hash")), tampered)
    by_doc = dict(zip(second["doc_id"], second["text"]))
    assert by_doc["a"] == "from previous"  # unchanged content hash: reused, not re-split
    assert by_doc["b"] == "B\n\nbeta"  # changed: split again
    assert second["doc_id"].to_list() == ["a", "b"]


# --- frozen output: a faster chunker must produce exactly the same rows --------------------------------------
# Digests of whole chunk frames computed with the chunker as it was before its speed-up (issue 12). Any change to
# a chunk's text, token count, heading path, position or id changes a digest: re-freeze only on purpose (a new
# id for every chunk means every Milvus row is re-upserted).

REPO = Path(__file__).resolve().parents[1]
DOCS_COMMIT = "234c67f26dd6d02ea48aeb49135b3e805c28f1ce"  # the project's docs and README.md as of this commit
SCIFACT = Path(os.environ.get("RAG_SCIFACT", REPO.parent / "shared" / "data" / "scifact"))
FROZEN = {
    "synthetic-256-32": "257:7cc6f9772bbefbd85841212587211e24b8114fa7afc08ed49cafcd012cd8d70a",
    "synthetic-64-8": "1018:9a267e1e25b68cc9e003c042f103185c450f0244578ed723f380111f3694ea98",
    "docs-256-32": "133:c1e906da00da4f0ecf3cb20d503458dab7f1a13a8751cc1793b364872dbf50e0",
    "docs-64-8": "624:b83adab0fad14d9dce17f8e32f72cdcef556504e798d1f50174c0a5e0ab7c083",
    "scifact-256-32": "10406:1f2113eee78b30affa6b75e06ce3943c2443c6ad27db7dba410c64e9e66453e3",
}


def frame_digest(frame: pl.DataFrame) -> str:
    h = hashlib.sha256()
    for row in frame.select(list(CHUNK_SCHEMA)).iter_rows():
        h.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    return f"{frame.height}:{h.hexdigest()}"


def synthetic_markdown(n: int = 40, seed: int = 12) -> pl.DataFrame:
    """Markdown with what the chunker has to get right: headings in and out of code fences, tables, lists,
    CRLF, accents, CJK and emoji, Markdown-like words, titles empty, messy, over the prefix budget or repeated."""
    rng = random.Random(seed)
    vocab = ("vector Milvus hybrid search BM25 dense sparse naïve café 東京都 emoji🙂 x² don't e.g. [CLS] #tag `code` "
             "**bold** über Straße retrieval-augmented 3.14 https://example.org/a?b=c résumé Ωmega").split()

    def sentence() -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 30))).capitalize() + "."

    def paragraph() -> str:
        return " ".join(sentence() for _ in range(rng.randint(1, 6)))

    def block(depth: int) -> str:
        kind = rng.random()
        if kind < 0.15:
            return "```python\n# not a heading\nx = 1\n" + paragraph() + "\n```"
        if kind < 0.25:
            return "\n".join(f"- {sentence()}" for _ in range(rng.randint(2, 8)))
        if kind < 0.32:
            return "| a | b |\n|---|---|\n" + "\n".join(f"| {sentence()} | {rng.choice(vocab)} |" for _ in range(4))
        if kind < 0.45 and depth < 6:
            return f"{'#' * (depth + 1)} {sentence()[:40]}"
        return paragraph()

    rows = []
    for i in range(n):
        title = rng.choice(["", f"Doc {i}", f"  Messy\n title {i} ", " ".join(vocab) * 2, sentence()[:60]])
        body = "\n\n".join(block(rng.randint(0, 6)) for _ in range(rng.randint(1, 12)))
        if rng.random() < 0.3 and title.strip():
            body = f"# {title.strip()}\n\n{body}"
        if rng.random() < 0.15:
            body = body.replace("\n", "\r\n")
        if rng.random() < 0.1:
            body = f"\n  {body}  \n\n"
        rows.append({"doc_id": f"syn{i}", "source": "synthetic", "title": title, "text": body,
                     "link": f"https://example.org/{i}", "content_hash": f"h{i}", "sensitive": i % 7 == 0})
    return docs(rows)


def docs_at_commit(commit: str) -> pl.DataFrame | None:
    """docs/*.md and README.md as of `commit` (None outside a git checkout that has it)."""
    try:
        listing = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", commit, "docs/", "README.md"],
                                 capture_output=True, text=True, check=True).stdout.split()
        rows = []
        for path in sorted(p for p in listing if p.endswith(".md")):
            text = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:{path}"],
                                  capture_output=True, text=True, check=True).stdout
            h1 = re.search(r"^# (.+)$", text, re.MULTILINE)
            rows.append({"doc_id": path, "source": "docs", "title": h1.group(1) if h1 else path, "text": text, "link": path})
    except (OSError, subprocess.CalledProcessError):
        return None
    return docs(rows) if rows else None


def scifact_docs() -> pl.DataFrame | None:
    corpus = SCIFACT / "corpus.jsonl"
    if not corpus.exists():
        return None
    records = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    return docs([{"doc_id": r["_id"], "source": "scifact", "title": r["title"], "text": r["text"]} for r in records])


def test_chunks_of_a_synthetic_markdown_corpus_are_frozen(tokenizer):
    frame_in = synthetic_markdown()
    assert frame_digest(Chunker(tokenizer, ChunkSettings(256, 32), 256).chunk_frame(frame_in)) == FROZEN["synthetic-256-32"]
    assert frame_digest(Chunker(tokenizer, ChunkSettings(64, 8)).chunk_frame(frame_in)) == FROZEN["synthetic-64-8"]


def test_chunks_of_the_project_docs_are_frozen(tokenizer):
    frame_in = docs_at_commit(DOCS_COMMIT)
    if frame_in is None:
        pytest.skip(f"not a git checkout with commit {DOCS_COMMIT[:7]}")
    assert frame_digest(Chunker(tokenizer, ChunkSettings(256, 32), 256).chunk_frame(frame_in)) == FROZEN["docs-256-32"]
    assert frame_digest(Chunker(tokenizer, ChunkSettings(64, 8)).chunk_frame(frame_in)) == FROZEN["docs-64-8"]


@pytest.mark.slow
def test_chunks_of_the_scifact_corpus_are_frozen(tokenizer):
    frame_in = scifact_docs()
    if frame_in is None:
        pytest.skip(f"SciFact not at {SCIFACT}; set RAG_SCIFACT")
    assert frame_digest(Chunker(tokenizer, ChunkSettings(256, 32), 256).chunk_frame(frame_in)) == FROZEN["scifact-256-32"]


def test_capacity_groups_split_in_threads_give_the_serial_output(tokenizer):
    frame_in = synthetic_markdown()
    serial = Chunker(tokenizer, ChunkSettings(64, 8), threads=1)
    threaded = Chunker(tokenizer, ChunkSettings(64, 8), threads=4)
    _, costs = serial._prefixes(frame_in["title"].to_list())
    assert len(set(costs)) > 2  # several capacity groups, so several run at once
    assert threaded.chunk_frame(frame_in).equals(serial.chunk_frame(frame_in))
    assert frame_digest(threaded.chunk_frame(frame_in)) == FROZEN["synthetic-64-8"]
