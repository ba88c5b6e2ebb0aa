"""The bundled LLM widened to F16 matrices: the same model's predictions, made once, chosen by `$RAG_LLM_WEIGHTS`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_assets.llm import local_model
from rag_assets.llm.gguf_widen import widen_gguf
from rag_assets.model_servers import llm_spec

TEXT = ("Dagster models a pipeline as software-defined assets. A sensor adds one dynamic partition per source; the "
        "documents asset reads each file, the chunks asset splits it into token-bounded pieces, and the index asset "
        "writes their vectors to Milvus, so a question retrieves the chunks nearest to it.")


def distributions(path: Path, options: dict) -> tuple[np.ndarray, list[int]]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=256, n_threads=2, n_threads_batch=2, seed=0, verbose=False, logits_all=True, **options)
    tokens = llm.tokenize(TEXT.encode())
    llm.eval(tokens)
    logits = np.asarray(llm.scores[: len(tokens)], dtype=np.float64)
    logits -= logits.max(-1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True)), tokens


@pytest.mark.slow
def test_the_widened_file_predicts_what_the_bundled_file_predicts(tmp_path: Path):
    widened = widen_gguf(local_model.bundled_gguf_path(), tmp_path / "widened.gguf")
    assert widened.stat().st_size > local_model.bundled_gguf_path().stat().st_size  # F16 takes more room than Q4/Q5
    assert [p.name for p in tmp_path.iterdir()] == ["widened.gguf"]  # no partial file left behind
    ref, tokens = distributions(local_model.bundled_gguf_path(), {})
    got, _ = distributions(widened, local_model.RUNTIME)
    kl = (np.exp(ref) * (ref - got)).sum(-1)
    agree = (ref.argmax(-1) == got.argmax(-1)).mean()
    nll_ref = -ref[np.arange(len(tokens) - 1), tokens[1:]].mean()
    nll_got = -got[np.arange(len(tokens) - 1), tokens[1:]].mean()
    # measured: KL 0.007 a token, 94% the same top token, the same perplexity (bench/llm_weights.py); a wrong
    # tensor layout or type gives KL > 0.4 (a 4-bit requantization: 0.47) and a perplexity far off
    assert kl.mean() < 0.05 and agree > 0.85, (kl.mean(), agree)
    assert abs(nll_got - nll_ref) < 0.05, (nll_ref, nll_got)


def test_an_existing_copy_is_kept_and_a_failed_one_leaves_nothing(tmp_path: Path):
    kept = tmp_path / "kept.gguf"
    kept.write_bytes(b"made earlier")
    assert widen_gguf(tmp_path / "missing.gguf", kept) == kept and kept.read_bytes() == b"made earlier"
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(RuntimeError, match="could not widen"):
        widen_gguf(bad, tmp_path / "out.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gguf", "kept.gguf"]


def test_the_setting_picks_the_file_and_rejects_a_typo(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(local_model.WEIGHTS_ENV, "bundled")
    assert local_model.gguf_path() == local_model.bundled_gguf_path()
    monkeypatch.setenv(local_model.WEIGHTS_ENV, "f16")
    assert local_model.gguf_path().name == local_model.widened_gguf_name()
    assert local_model.gguf_path().parent == local_model.bundled_gguf_path().parent
    monkeypatch.setenv(local_model.WEIGHTS_ENV, "fp16")
    with pytest.raises(ValueError, match="RAG_LLM_WEIGHTS='fp16': expected one of f16, bundled"):
        local_model.gguf_path()


def test_the_model_server_loads_the_chosen_file_with_the_runtime_options(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(local_model.WEIGHTS_ENV, raising=False)
    command = llm_spec().command(8000)
    assert command[command.index("--model") + 1] == str(local_model.widened_gguf_path())
    assert command[command.index("--flash_attn") + 1] == "true"
    assert command[command.index("--n_batch") + 1] == command[command.index("--n_ubatch") + 1] == "1024"
    monkeypatch.setenv(local_model.WEIGHTS_ENV, "bundled")
    assert llm_spec().command(8000)[command.index("--model") + 1] == str(local_model.bundled_gguf_path())
