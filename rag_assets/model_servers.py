"""Model servers `rag dev` runs beside Milvus, so runs never load a model themselves.

Each server is a long-lived process that loads its model once; runs find it through an environment variable
and fall back to loading in-process when it is unset or unreachable. In production the same variables point
at shared servers (TEI-like embedders speaking the same protocol, vLLM or llama.cpp for the LLM).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from rag_assets.embedding.embedder import SERVER_URL_ENV as EMBEDDER_URL_ENV
from rag_assets.llm.providers import LLM_SERVER_URL_ENV

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class ServerSpec:
    name: str
    env_var: str  # runs read the server's URL from here
    health_path: str  # GET answers 200 once the model is loaded
    command: Callable[[int], list[str]]  # the command line for a port


def embedder_spec(model: str = DEFAULT_EMBEDDING_MODEL) -> ServerSpec:
    return ServerSpec("embedder", EMBEDDER_URL_ENV, "/health",
                      lambda port: [sys.executable, "-m", "rag_assets.embedding.server", "--port", str(port), "--model", model])


def llm_spec(n_ctx: int = 4096) -> ServerSpec:
    """llama-cpp-python's OpenAI-compatible server on the bundled GGUF (assembled from its package first), its
    threads re-decided per decode from the cores the rest of the machine leaves idle (`rag_assets.llm.llama_server`).

    `--logits_all false`: the server's default keeps the logits of every prompt token (for `logprobs`, which nothing
    here asks for); with Gemma 3's 262k-token vocabulary that made reading a 700-token prompt 2.7x slower (8.6 s vs
    3.2 s on one thread). The GGUF is `gguf_path()`'s (F16 matrices unless `$RAG_LLM_WEIGHTS=bundled`), with
    `local_model.RUNTIME`'s options. `--draft_model prompt-lookup-decoding`: `lookup_decoding` (`$RAG_LLM_LOOKUP` draft tokens, 0: off)."""
    from rag_assets.llm.local_model import RUNTIME, gguf_path, llm_threads
    from rag_assets.llm.lookup_decoding import draft_tokens

    path, threads, drafts = str(gguf_path()), str(llm_threads()), draft_tokens()
    lookup = ["--draft_model", "prompt-lookup-decoding", "--draft_model_num_pred_tokens", str(drafts)] if drafts else []
    runtime = [arg for key, value in RUNTIME.items() for arg in (f"--{key}", str(value).lower())]
    return ServerSpec("llm", LLM_SERVER_URL_ENV, "/v1/models",
                      lambda port: [sys.executable, "-m", "rag_assets.llm.llama_server", "--model", path, "--host", "127.0.0.1", "--port", str(port),
                                    "--n_ctx", str(n_ctx), "--n_threads", threads, "--n_threads_batch", threads, "--seed", "0",
                                    "--logits_all", "false", *runtime, *lookup])


def default_specs() -> list[ServerSpec]:
    return [embedder_spec(os.environ.get("RAG_EMBEDDER_MODEL", DEFAULT_EMBEDDING_MODEL)), llm_spec()]


class ServerProcess:
    """One model server on 127.0.0.1:<port>: started, health-checked, stopped with its process group."""

    def __init__(self, spec: ServerSpec, port: int, env: dict[str, str], log: Path):
        self.spec, self.port, self.env, self.log = spec, port, env, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.spec.command(self.port), env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def healthy(self) -> bool:
        try:
            return httpx.get(self.url + self.spec.health_path, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the {self.spec.name} server exited with {self.proc.returncode}; see {self.log}")
            if self.healthy():
                return
            time.sleep(0.5)
        raise TimeoutError(f"the {self.spec.name} server on {self.url} was not healthy after {timeout_s:.0f}s; see {self.log}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
