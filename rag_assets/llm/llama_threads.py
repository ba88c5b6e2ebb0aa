"""llama.cpp's thread count, re-decided before every decode from what the rest of the machine uses.

llama.cpp's threads meet after every layer. When another process holds one of the cores, a thread waiting at that
meeting point stalls the token: on 2 cores beside one busy process, 2 threads generated 1.0 tokens/s against 14 on
1 thread. On an idle machine 2 threads are 1.7x as fast as 1. So, unless `$RAG_LLM_THREADS` fixes the count, the model
computes with the cores the other processes leave idle while it computes (at least one thread; `CpuShare`).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rag_assets.settings import available_cores

LLM_THREADS_ENV = "RAG_LLM_THREADS"
SAMPLE_S = 0.25
BUSY_OWN_CORES = 0.5  # a window counts when this process (the model) used at least this much CPU in it
# libgomp's threads spin this many rounds at a meeting point before they sleep (its default, 300,000, holds a core
# for about a millisecond, which a process beside the model needed): idle speed kept, bursts of load hurt less
GOMP_SPINCOUNT = "10000"


def machine_busy_ticks(stat_text: str) -> int:
    """Busy clock ticks of all CPUs together from /proc/stat's first line (user, nice, system, irq, softirq, steal:
    time another VM took counts as busy)."""
    fields = [int(x) for x in stat_text.split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq + steal


def process_ticks(self_stat_text: str) -> int:
    """This process's user + system clock ticks (all threads) from /proc/self/stat."""
    after_name = self_stat_text.rsplit(")", 1)[1].split()  # the name may hold spaces; fields from the 3rd on
    return int(after_name[11]) + int(after_name[12])  # utime, stime: fields 14 and 15


def threads_for(cores: int, others_busy: float) -> int:
    """The cores the other processes leave idle, rounded to the nearest whole core (half up); at least one."""
    return max(1, min(cores, int(cores - others_busy + 0.5)))


class CpuShare:
    """How many cores the other processes used in the last two `SAMPLE_S` windows during which this process computed
    (used half a core or more; the smaller of the two, so a burst such as a client's poll does not count), sampled by a
    daemon thread (Linux only). Windows in which the model sat idle are left out: what the
    platform does between two calls (the ask's own run starting, its retrieval) says nothing about the next call, and
    counting it made every prompt start on one thread (issue 12, docs/benchmarks.md)."""

    def __init__(self, proc: Path = Path("/proc"), sample_s: float = SAMPLE_S, clock: Callable[[], float] = time.monotonic):
        self.proc, self.sample_s, self.clock = proc, sample_s, clock
        self.tick_s = 1.0 / os.sysconf("SC_CLK_TCK")
        self.others_busy = self._previous = 0.0
        self._last = self._read()
        self._thread: threading.Thread | None = None

    @staticmethod
    def available(proc: Path = Path("/proc")) -> bool:
        return (proc / "stat").is_file() and (proc / "self" / "stat").is_file()

    def _read(self) -> tuple[float, int, int]:
        return (self.clock(), machine_busy_ticks((self.proc / "stat").read_text()),
                process_ticks((self.proc / "self" / "stat").read_text()))

    def sample(self) -> float:
        """Update (if this process computed since the last sample) and return `others_busy`."""
        now = self._read()
        wall = now[0] - self._last[0]
        if wall > 0:
            own = (now[2] - self._last[2]) * self.tick_s / wall
            if own >= BUSY_OWN_CORES:
                others = max(0.0, (now[1] - self._last[1]) * self.tick_s / wall - own)
                self.others_busy = min(others, self._previous)  # two windows in a row: a burst of a poll is no load
                self._previous = others
        self._last = now
        return self.others_busy

    def start(self) -> "CpuShare":
        def loop() -> None:
            while True:
                time.sleep(self.sample_s)
                self.sample()

        self._thread = threading.Thread(target=loop, name="cpu-share", daemon=True)
        self._thread.start()
        return self


def fixed_threads() -> int | None:
    """`$RAG_LLM_THREADS` when it is a positive whole number."""
    value = os.environ.get(LLM_THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def adaptive_eval(eval_fn: Callable, share: CpuShare, cores: int, set_threads: Callable[[object, int], None],
                  log: Callable[[str], None] | None = None) -> Callable:
    """Wrap `Llama.eval` so each call first sets the context's threads to `threads_for(cores, share.others_busy)`;
    `log` hears each change."""
    @functools.wraps(eval_fn)
    def eval_with_threads(llama, tokens):
        n = threads_for(cores, share.others_busy)
        if (before := getattr(llama, "_rag_threads", None)) != n:
            set_threads(llama, n)
            llama._rag_threads = n
            if log and before is not None:
                log(f"llama.cpp threads {before} -> {n}: other processes used {share.others_busy:.2f} of {cores} cores")
        return eval_fn(llama, tokens)

    return eval_with_threads


def set_llama_threads(llama, n: int) -> None:
    import llama_cpp

    llama_cpp.llama_set_n_threads(llama._ctx.ctx, n, n)
    llama.n_threads = llama.n_threads_batch = n


def start_threads() -> int:
    """Threads llama.cpp starts with: `$RAG_LLM_THREADS`; else every core where the count adapts per decode (Linux),
    else one fewer than the cores (at least one), leaving a core to the platform beside the model."""
    if (fixed := fixed_threads()) is not None:
        return fixed
    cores = available_cores()
    return cores if CpuShare.available() else max(1, cores - 1)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def install_adaptive_threads(limit_spin: bool = False) -> int | None:
    """Make every `llama_cpp.Llama` in this process pick its threads per decode. Returns the cores it adapts over, or
    None when it does not (a fixed `$RAG_LLM_THREADS`, or no /proc to measure). `limit_spin` sets libgomp's spin count
    for this process and its children (the model server's own process; not a run's, whose PyTorch shares libgomp):
    call it before llama_cpp is imported for that to apply."""
    if fixed_threads() is not None or not CpuShare.available():
        return None
    if limit_spin:
        os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
    import llama_cpp

    if getattr(llama_cpp.Llama.eval, "_rag_adaptive", False):
        return available_cores()
    cores = available_cores()
    wrapped = adaptive_eval(llama_cpp.Llama.eval, CpuShare().start(), cores, set_llama_threads, log=_stderr)
    wrapped._rag_adaptive = True
    llama_cpp.Llama.eval = wrapped
    return cores
