"""The chunker: token limits by the model's tokenizer, Markdown structure, stable content-hash ids."""

import polars as pl
import pytest

from rag_assets.chunking import Chunker, ChunkSettings, heading_path_at, heading_spans
from rag_assets.sources.document import DOCUMENT_SCHEMA
from resources import local_embedding

MODEL = "all-MiniLM-L6-v2"


def docs(rows: list[dict]) -> pl.DataFrame:
    base = {"doc_id": "d", "source": "s", "locator": "x", "link": "", "title": "", "text": "", "content_hash": "",
            "updated_at": None, "sensitive": False, "error": None}
    return pl.DataFrame([{**base, **r} for r in rows], schema=DOCUMENT_SCHEMA)


@pytest.fixture(scope="module")
def tokenizer():
    return local_embedding.load_tokenizer(MODEL)


def test_chunks_respect_the_token_limit_counted_with_special_tokens(tokenizer):
    text = "\n\n".join(f"Paragraph {i}. " + "Milvus stores dense and sparse vectors for hybrid search. " * 6 for i in range(40))
    chunker = Chunker(tokenizer, ChunkSettings(max_tokens=64, overlap=8), local_embedding.model_max_tokens(MODEL))
    frame = chunker.chunk_frame(docs([{"doc_id": "d1", "title": "Vectors", "text": text}]))
    assert frame.height > 10
    assert frame["n_tokens"].max() <= 64
    recount = [len(chunker.tokenizer.encode(t).ids) for t in frame["text"].to_list()]
    assert recount == frame["n_tokens"].to_list()
    assert all(t.startswith("Vectors\n\n") for t in frame["text"].to_list())


def test_limit_is_capped_by_the_model_max_sequence_length(tokenizer):
    chunker = Chunker(tokenizer, ChunkSettings(max_tokens=4096, overlap=0), local_embedding.model_max_tokens(MODEL))
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
