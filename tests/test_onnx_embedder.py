"""The int8 ONNX embedder's own path: one tokenization pass, length-sorted batches, the input order kept."""

import numpy as np
import pytest

from rag_assets.embedding import bundled, onnx_int8

MODEL = "all-MiniLM-L6-v2-int8"
TEXTS = [
    "Short.",
    "A longer passage about clinical trials: " + "randomised, double-blind, placebo-controlled; " * 40,
    "Mitochondria produce most of the cell's ATP through oxidative phosphorylation.",
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.",
    "The transcription factor p53 arrests the cell cycle after DNA damage.",
    "Milvus stores dense vectors in HNSW indexes and sparse vectors for BM25.",
    "Die Impfung reduziert die Zahl schwerer Verläufe deutlich.",
]


def session():
    return onnx_int8.load_session(str(bundled.weights_file(MODEL)), onnx_int8.cpu_cores())


def test_padded_batch_pads_right_and_masks_the_padding():
    ids, mask = onnx_int8.padded_batch([[101, 7, 102], [101, 102]], pad_id=0)
    assert ids.tolist() == [[101, 7, 102], [101, 102, 0]] and ids.dtype == np.int64
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]


def test_mean_pool_ignores_padded_positions():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(2, 4, 8)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    noisy = hidden.copy()
    noisy[0, 2:] = 1e3  # what a padded position holds must not matter
    np.testing.assert_allclose(onnx_int8.mean_pool(hidden, mask), onnx_int8.mean_pool(noisy, mask), atol=1e-6)
    expected = hidden[0, :2].mean(axis=0)
    np.testing.assert_allclose(onnx_int8.mean_pool(hidden, mask)[0], expected / np.linalg.norm(expected), atol=1e-6)


def test_the_tokenizer_truncates_to_the_model_limit_and_does_not_pad():
    tok = bundled.load_onnx_tokenizer(MODEL)
    lengths = [len(e.ids) for e in tok.encode_batch(TEXTS)]
    assert max(lengths) == bundled.model_max_tokens(MODEL) and min(lengths) < 10


def test_session_uses_one_thread_per_core_present():
    assert session().get_session_options().intra_op_num_threads == onnx_int8.cpu_cores()


@pytest.mark.slow
def test_sorted_batches_keep_the_input_order():
    tok = bundled.load_onnx_tokenizer(MODEL)
    vectors = onnx_int8.onnx_encode(session(), tok, TEXTS, batch_size=2)
    reversed_ = onnx_int8.onnx_encode(session(), tok, TEXTS[::-1], batch_size=2)
    one_by_one = np.concatenate([onnx_int8.onnx_encode(session(), tok, [t]) for t in TEXTS])
    assert vectors.shape == (len(TEXTS), bundled.model_dimension(MODEL)) and vectors.dtype == np.float32
    # int8 activations are quantized per batch, so batch company moves a vector by a hair, never to another text's
    assert (vectors * reversed_[::-1]).sum(axis=1).min() > 0.999
    assert (vectors * one_by_one).sum(axis=1).min() > 0.999
    assert (np.argmax(vectors @ one_by_one.T, axis=1) == np.arange(len(TEXTS))).all()
