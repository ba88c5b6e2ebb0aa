"""llama.cpp's thread count: re-decided per decode from the cores other processes use, unless RAG_LLM_THREADS fixes
it; and the build's CPU extensions."""

import importlib.util
import inspect
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from rag_assets.llm import llama_threads, local_model
from rag_assets.model_servers import llm_spec

ROOT = Path(__file__).resolve().parents[1]
STAT = "cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
SELF_STAT = "4242 (llama server (x)) S 1 2 3 0 -1 4194560 1 0 0 0 {utime} {stime} 0 0 20 0 3 0 100 0 0\n"


@pytest.mark.parametrize("cores, others, expected", [(2, 0.0, 2), (2, 0.3, 2), (2, 0.5, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 2.0, 1),
                                                     (4, 1.2, 3), (4, 3.9, 1), (1, 0.0, 1)])
def test_the_model_takes_the_cores_the_other_processes_leave_idle(cores, others, expected):
    assert llama_threads.threads_for(cores, others) == expected


def test_proc_stat_parsing():
    assert llama_threads.machine_busy_ticks("cpu  10 1 5 900 7 2 3 4 0 0\ncpu0 9 9 9 9\n") == 10 + 1 + 5 + 2 + 3 + 4
    assert llama_threads.process_ticks(SELF_STAT.format(utime=31, stime=9)) == 40  # a name with spaces and parentheses


def test_cpu_share_counts_only_the_other_processes(tmp_path):
    (tmp_path / "self").mkdir()
    now = [100.0]

    def write(busy: int, own: int) -> None:
        (tmp_path / "stat").write_text(STAT.format(busy=busy, idle=1000))
        (tmp_path / "self" / "stat").write_text(SELF_STAT.format(utime=own, stime=0))

    write(busy=1000, own=300)
    share = llama_threads.CpuShare(proc=tmp_path, clock=lambda: now[0])
    hz = round(1 / share.tick_s)
    busy, own = 1000, 300

    def window(seconds: float, machine_cores: float, own_cores: float) -> float:
        nonlocal busy, own
        now[0] += seconds
        busy, own = busy + round(machine_cores * seconds * hz), own + round(own_cores * seconds * hz)
        write(busy=busy, own=own)
        return share.sample()

    assert window(1.0, 2, 1) == pytest.approx(0.0)  # one other core busy for one window only: a burst, not load
    assert window(1.0, 2, 1) == pytest.approx(1.0)  # a second window in a row: load
    assert window(0.5, 2, 2) == pytest.approx(0.0)  # both cores this process's
    assert window(1.0, 2, 0) == pytest.approx(0.0)  # the model idle, the others busy (the ask's own run retrieving):
    # says nothing about the next call; the figure stands


def test_the_real_machine_sees_a_busy_process_beside_it():
    if not llama_threads.CpuShare.available():
        pytest.skip("no /proc")
    share = llama_threads.CpuShare()
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        share.sample()
        for _ in range(2):
            deadline = time.monotonic() + 0.4
            while time.monotonic() < deadline:  # this process computes, as the model would
                pass
            share.sample()
        assert share.others_busy > 0.5  # a core (or its fair share of one) went to the other process
    finally:
        burner.kill()
        burner.wait()


def test_each_decode_sets_the_threads_only_when_they_change():
    share, calls, evaluated = types.SimpleNamespace(others_busy=0.0), [], []
    wrapped = llama_threads.adaptive_eval(lambda llama, tokens: evaluated.append(tokens), share, 2,
                                          lambda llama, n: calls.append(n))
    llama = types.SimpleNamespace()
    wrapped(llama, [1]), wrapped(llama, [2])
    share.others_busy = 1.0
    wrapped(llama, [3])
    share.others_busy = 0.1
    wrapped(llama, [4])
    assert calls == [2, 1, 2] and evaluated == [[1], [2], [3], [4]]


def test_a_real_llama_context_switches_threads_between_decodes():
    from llama_cpp import Llama

    llm = Llama(model_path=str(local_model.gguf_path()), n_ctx=512, n_threads=2, n_threads_batch=2, seed=0, verbose=False)
    share = types.SimpleNamespace(others_busy=1.0)
    bare = inspect.unwrap(Llama.eval)  # without the process-wide hook an earlier in-process model may have installed
    llm.eval = types.MethodType(llama_threads.adaptive_eval(bare, share, 2, llama_threads.set_llama_threads), llm)
    one = llm.create_completion("The capital of France is", max_tokens=8, temperature=0)["choices"][0]["text"]
    assert llm._rag_threads == 1 and llm.n_threads == 1
    share.others_busy = 0.0
    llm.reset()
    two = llm.create_completion("The capital of France is", max_tokens=8, temperature=0)["choices"][0]["text"]
    assert llm._rag_threads == 2 and llm.n_threads == 2
    assert one.strip() and two.strip()


def test_threads_start_at_every_core_where_they_adapt_and_leave_one_where_they_cannot(monkeypatch):
    monkeypatch.delenv(local_model.LLM_THREADS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(llama_threads.CpuShare, "available", staticmethod(lambda proc=None: True))
    assert local_model.llm_threads() == 4
    monkeypatch.setattr(llama_threads.CpuShare, "available", staticmethod(lambda proc=None: False))
    assert local_model.llm_threads() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert local_model.llm_threads() == 1


def test_the_setting_fixes_the_threads_and_a_bad_value_is_ignored(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(llama_threads.CpuShare, "available", staticmethod(lambda proc=None: True))
    monkeypatch.setenv(local_model.LLM_THREADS_ENV, "2")
    assert local_model.llm_threads() == 2
    assert llama_threads.install_adaptive_threads() is None  # fixed: nothing adapts
    monkeypatch.setenv(local_model.LLM_THREADS_ENV, "zero")
    assert local_model.llm_threads() == 4


def test_the_model_server_is_the_adaptive_entry_point_with_those_threads(monkeypatch):
    monkeypatch.setenv(local_model.LLM_THREADS_ENV, "3")
    command = llm_spec().command(8000)
    assert command[1:3] == ["-m", "rag_assets.llm.llama_server"]
    assert command[command.index("--n_threads") + 1] == "3" and command[command.index("--n_threads_batch") + 1] == "3"


def test_the_model_server_keeps_no_logits_of_prompt_tokens():
    """llama-cpp-python's server keeps every prompt token's logits by default (262k of them per token for Gemma 3),
    which made reading a prompt 2.7x slower; nothing asks it for logprobs."""
    command = llm_spec().command(8000)
    assert command[command.index("--logits_all") + 1] == "false"


def _cmake_args_module():
    spec = importlib.util.spec_from_file_location("llama_cmake_args", ROOT / "deploy" / "llama_cmake_args.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_build_asks_for_the_extensions_the_cpu_reports():
    args = _cmake_args_module()
    flags = args.cpu_flags("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512bw\nbugs\t\t: x\n")
    assert args.cmake_args(flags) == "-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON"
    assert args.cmake_args(args.cpu_flags("Features\t: fp asimd\n")) == "-DGGML_NATIVE=OFF"  # an Arm CPU: portable


def test_the_installed_llama_cpp_uses_the_cpus_avx512():
    """`make install` builds llama.cpp with the AVX-512 this CPU has (prompts read 1.4-1.6x faster than portable)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file() or "avx512f" not in _cmake_args_module().cpu_flags(cpuinfo.read_text()):
        pytest.skip("this CPU has no AVX-512")
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    assert "AVX512 = 1" in info, f"llama.cpp was built without AVX-512 ({info}); rebuild it with `make install`"


def test_only_the_model_server_limits_libgomps_spinning():
    """A run that loads the model in-process keeps libgomp's settings (PyTorch in the same process uses it too)."""
    code = ("import os, sys; sys.path.insert(0, {root!r}); from rag_assets.llm.llama_threads import install_adaptive_threads; "
            "install_adaptive_threads({limit}); print(os.environ.get('GOMP_SPINCOUNT', '-'))")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", local_model.LLM_THREADS_ENV)}
    spins = [subprocess.run([sys.executable, "-c", code.format(root=str(ROOT), limit=limit)], env=env, capture_output=True,
                            text=True, check=True).stdout.strip() for limit in (False, True)]
    expected = ["-", llama_threads.GOMP_SPINCOUNT] if llama_threads.CpuShare.available() else ["-", "-"]
    assert spins == expected
