"""Index scale on Milvus Lite: build time, query latency, memory and disk at 100k real and up to 1M synthetic chunks.

Everything goes through the project's own code: `ensure_collection` (the chunks schema: HNSW cosine dense field,
BM25 function and sparse index, inverted index on `source`), `sync_source` (batched upserts of WRITE_BATCH rows,
then a flush) and `Retriever.search`, against a `milvus-lite server` over HTTP, the process `rag dev` runs.

- real: SciFact's chunks and their all-MiniLM-L6-v2 vectors (from the pipeline's assets, with the embedding cache
  at --cache-dir, so nothing is embedded again), copied with fresh ids, one source per copy, up to --real-chunks.
- synthetic: --chunks rows of random unit vectors (dimension 384) whose texts are SciFact sentences drawn at random
  until each reaches the word count of a random real chunk, so BM25 indexes real vocabulary at real lengths.
  Written in sources of --source-size rows; the timings after every source are printed to stderr as it goes, so
  a run stopped early still shows the rate.

Per collection: build seconds (sync = upsert + flush; then `load_collection` after a release, which waits for the
indexes), query latency p50/p99 of `Retriever.search` for one query at a time (SciFact queries, embedded beforehand,
so the figures are Milvus + client; the query-embedding time is given apart) in hybrid (fusion auto), dense and
BM25 modes, a breakdown of the hybrid (dense search, BM25 search, fusion, a bare round trip), the RSS of the Milvus
process and its data folder's size. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, require_scifact  # noqa: E402

DIM = 384
DEFAULT_CACHE = "/tmp/h/emb_cache"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()}] {msg}", file=sys.stderr, flush=True)


class LiteServer:
    """A `milvus-lite server` on a free loopback port (the process `rag dev` runs); its RSS and disk size."""

    def __init__(self, data_dir: Path):
        from rag_assets.devserver import bin_path, free_port, wait_for_port

        self.data_dir, port = data_dir, free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([bin_path("milvus-lite"), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                                      "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", port, 120, self.proc)
        self.uri = f"http://127.0.0.1:{port}"

    def rss_mb(self) -> float:
        import psutil

        proc = psutil.Process(self.proc.pid)
        return round(sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20, 1)

    def disk_mb(self) -> float:
        return round(sum(f.stat().st_size for f in self.data_dir.rglob("*") if f.is_file()) / 2**20, 1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # busy with a search still running: stop it for good
            self.proc.kill()
            self.proc.wait(timeout=60)


def scifact_chunks(root: Path, cache_dir: Path, work: Path):
    """SciFact's chunks (polars) and their vectors, from the pipeline's documents -> chunks -> embeddings assets."""
    import polars as pl

    from rag_assets.pipeline import Workspace
    from rag_assets.storage import names_for
    from rag_assets.variants import DEFAULT_SETTINGS

    ws = Workspace(root=work / "ws", cache_dir=cache_dir)
    ws.write_sources([{"name": "scifact", "kind": "beir", "paths": [str(root)], "max_file_mb": 1000}])
    ws.materialize("scifact", selection=["documents", "chunks", "embeddings"])
    io = ws.resources()["io_manager"]
    names = names_for("scifact", DEFAULT_SETTINGS)
    chunks = pl.read_parquet(io.stored_path("chunks", names))
    vectors = pl.read_parquet(io.stored_path("embeddings", names))
    assert chunks["chunk_id"].to_list() == vectors["chunk_id"].to_list()
    return chunks, vectors["vector"].to_numpy().astype(np.float32)


def copies(chunks, vectors: np.ndarray, total: int):
    """(source, chunks, vectors) copies of the corpus with fresh chunk and doc ids, `total` rows in all."""
    import polars as pl

    from rag_assets.hashing import sha256_hex

    made, k = 0, 0
    while made < total:
        n = min(chunks.height, total - made)
        part = chunks.head(n).with_columns(
            pl.col("chunk_id").map_elements(lambda c, k=k: sha256_hex(str(k), c, length=32), return_dtype=pl.String),
            pl.format("{}~{}", pl.col("doc_id"), pl.lit(k)).alias("doc_id"),
            pl.lit(f"copy{k:03d}").alias("source"),
        )
        yield f"copy{k:03d}", part, vectors[:n]
        made, k = made + n, k + 1


def synthetic(chunks, total: int, source_size: int, seed: int = 0):
    """(source, chunks, vectors) of random unit vectors and SciFact-sentence texts at real chunk lengths."""
    import polars as pl

    rng = np.random.default_rng(seed)
    sentences = [s for t in chunks["text"].to_list() for s in re.split(r"(?<=[.!?])\s+", t) if len(s.split()) >= 3]
    sent_words = np.array([len(s.split()) for s in sentences])
    target_words = np.array([len(t.split()) for t in chunks["text"].to_list()])
    base = chunks.head(1)
    for start in range(0, total, source_size):
        n, source = min(source_size, total - start), f"syn{start // source_size:04d}"
        texts = []
        for goal in rng.choice(target_words, n):
            picked, words = [], 0
            while words < goal:
                i = int(rng.integers(len(sentences)))
                picked.append(sentences[i])
                words += int(sent_words[i])
            texts.append(" ".join(picked))
        ids = [f"{source}-{i:08d}" for i in range(n)]
        frame = pl.DataFrame({
            "chunk_id": ids, "doc_id": ids, "source": [source] * n, "title": [""] * n, "link": [""] * n,
            "heading_path": [""] * n, "position": pl.Series([0] * n, dtype=base["position"].dtype),
            "sensitive": [False] * n, "text": texts,
        })
        vecs = rng.standard_normal((n, DIM), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        yield source, frame, vecs


def timeboxed(parts, seconds: float):
    """`parts` until `seconds` have passed since the first one was asked for (0: all of them)."""
    started = time.perf_counter()
    for part in parts:
        if seconds and time.perf_counter() - started > seconds:
            log(f"stopping after {seconds:.0f} s: the figures are for the rows written so far")
            return
        yield part


def build(client, name: str, parts, server: LiteServer, max_rss_mb: float = 0) -> dict:
    """Sync every part (`sync_source`), then release and load (indexes ready); seconds and sizes. Stops adding parts
    once the Milvus process holds more than `max_rss_mb` (0: no limit)."""
    from rag_assets.index_store import count_rows, ensure_collection, sync_source

    ensure_collection(client, name, DIM)
    started, rows, progress = time.perf_counter(), 0, []
    for source, frame, vecs in parts:
        t = time.perf_counter()
        rows += sync_source(client, name, source, frame, vecs).inserted
        progress.append({"rows": rows, "part_s": round(time.perf_counter() - t, 1), "rss_mb": server.rss_mb()})
        log(f"{name}: {rows} rows, last part {progress[-1]['part_s']} s, total {time.perf_counter() - started:.0f} s, "
            f"milvus RSS {progress[-1]['rss_mb']} MB")
        if max_rss_mb and progress[-1]["rss_mb"] > max_rss_mb:
            log(f"stopping: the Milvus process holds more than {max_rss_mb:.0f} MB; the figures are for the rows written so far")
            break
    sync_s = time.perf_counter() - started
    t = time.perf_counter()
    client.release_collection(name)
    client.load_collection(name)
    load_s = time.perf_counter() - t
    return {"rows": count_rows(client, name), "sync_s": round(sync_s, 1), "load_s": round(load_s, 1),
            "build_s": round(sync_s + load_s, 1), "rows_per_s": round(rows / sync_s), "progress": progress,
            "load_avg_after": load_average()}


def percentiles(values: list[float]) -> dict:
    ms = np.array(values) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2), "n": len(values)}


MODES = ("hybrid_auto", "dense", "bm25")


def latencies(client, name: str, queries: list[str], vectors: np.ndarray, modes: tuple[str, ...] = MODES,
              server: "LiteServer | None" = None) -> dict:
    """One query at a time: Retriever.search per mode (the Milvus RSS after each, given the `server`), and, when
    every mode is measured, the hybrid's parts timed apart."""
    from rag_assets.fusion import DEPTH, fuse
    from rag_assets.retrieval import Retriever, RetrievalSettings

    lookup = {q: v for q, v in zip(queries, vectors)}
    retriever = Retriever(client, name, lambda qs: np.stack([lookup[q] for q in qs]))
    retriever.search(queries[:5], RetrievalSettings(mode=modes[0] if modes[0] != "hybrid_auto" else "hybrid"))  # warm-up
    out = {"load_avg_before": load_average()}
    settings_of = {"hybrid_auto": RetrievalSettings(), "dense": RetrievalSettings(mode="dense"), "bm25": RetrievalSettings(mode="bm25")}
    for label in modes:
        times = []
        for q in queries:
            t = time.perf_counter()
            retriever.search([q], settings_of[label])
            times.append(time.perf_counter() - t)
        out[label] = percentiles(times)
        if server is not None:
            out[label]["rss_mb_after"] = server.rss_mb()
        log(f"{name} {label}: {out[label]}")
    if set(modes) != set(MODES):
        out["load_avg_after"] = load_average()
        return out
    parts: dict[str, list[float]] = {"dense_100": [], "bm25_100": [], "fusion": [], "round_trip": [], "dense_10_ids": [], "bm25_10_ids": []}
    for q in queries:
        vec = lookup[q][None, :]
        t = time.perf_counter()
        dense = retriever._dense(vec, DEPTH, "")
        parts["dense_100"].append(time.perf_counter() - t)
        t = time.perf_counter()
        bm25 = retriever._bm25([q], DEPTH, "")
        parts["bm25_100"].append(time.perf_counter() - t)
        t = time.perf_counter()
        fuse(dense[0], bm25[0], 10, retriever.dense_weight)
        parts["fusion"].append(time.perf_counter() - t)
        t = time.perf_counter()
        client.get_server_version()
        parts["round_trip"].append(time.perf_counter() - t)
        t = time.perf_counter()  # the searches alone: top 10, ids only (no text or metadata fetched)
        client.search(name, data=vec.tolist(), anns_field="vector", limit=10, output_fields=["chunk_id"],
                      search_params={"metric_type": "COSINE", "params": {"ef": 64}})
        parts["dense_10_ids"].append(time.perf_counter() - t)
        t = time.perf_counter()
        client.search(name, data=[q], anns_field="sparse", limit=10, output_fields=["chunk_id"], search_params={"metric_type": "BM25"})
        parts["bm25_10_ids"].append(time.perf_counter() - t)
    out["hybrid_parts"] = {k: percentiles(v) for k, v in parts.items()}
    log(f"{name} hybrid parts: {out['hybrid_parts']}")
    out["load_avg_after"] = load_average()
    return out


def measure(label: str, parts, work: Path, queries: list[str], qvecs: np.ndarray, max_rss_mb: float = 0) -> dict:
    from rag_assets.index_store import HNSW_PARAMS
    from rag_assets.retrieval import HNSW_EF
    from resources.milvus import milvus_client

    server = LiteServer(work / f"milvus-{label}")
    try:
        client = milvus_client(server.uri)  # the project's client: keepalive options a `milvus-lite server` accepts
        name = f"chunks__bench_{label}"
        result = {"index": {"hnsw": HNSW_PARAMS, "ef": HNSW_EF}, "build": build(client, name, parts, server, max_rss_mb)}
        result["after_build"] = {"rss_mb": server.rss_mb(), "disk_mb": server.disk_mb()}
        result["latency"] = latencies(client, name, queries, qvecs)
        result["after_queries"] = {"rss_mb": server.rss_mb(), "disk_mb": server.disk_mb()}
        return result
    finally:
        server.stop()


def measure_existing(data_dir: Path, label: str, queries: list[str], qvecs: np.ndarray, modes: tuple[str, ...]) -> dict:
    """A collection an earlier run built and kept (`--work`): a fresh server on its data, load it (seconds, RSS),
    then query it in `modes`, in that order."""
    from rag_assets.index_store import count_rows
    from resources.milvus import milvus_client

    server = LiteServer(data_dir)
    try:
        client, name = milvus_client(server.uri), f"chunks__bench_{label}"
        result = {"rss_mb_started": server.rss_mb()}
        t = time.perf_counter()
        client.load_collection(name)
        result["load_s"] = round(time.perf_counter() - t, 1)
        result.update(rows=count_rows(client, name), rss_mb_loaded=server.rss_mb(), disk_mb=server.disk_mb(), load_avg=load_average())
        log(f"{name}: loaded {result}")
        result["latency"] = latencies(client, name, queries, qvecs, modes, server)
        return result
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=1_000_000, help="synthetic rows (0: skip)")
    parser.add_argument("--real-chunks", type=int, default=100_000, help="SciFact copies' rows (0: skip)")
    parser.add_argument("--source-size", type=int, default=50_000, help="synthetic rows per source (one sync_source each)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--max-rss-mb", type=float, default=12_000, help="stop adding synthetic sources once Milvus holds this much")
    parser.add_argument("--synthetic-queries", type=int, default=0, help="queries on the synthetic collection (0: --queries)")
    parser.add_argument("--max-build-s", type=float, default=0, help="stop adding synthetic sources after this long (0: never)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE, help="embedding cache holding SciFact's chunk vectors")
    parser.add_argument("--work", default="", help="folder for the data (default: a temp dir, removed after)")
    parser.add_argument("--reuse", action="store_true", help="query the synthetic collection an earlier run kept in --work (no build)")
    parser.add_argument("--modes", default=",".join(MODES), help="query modes, in order: hybrid_auto, dense, bm25")
    args = parser.parse_args()
    modes = tuple(args.modes.split(","))

    root = require_scifact()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="scale_index_"))
    try:
        from resources import EmbedderResource

        t = time.perf_counter()
        chunks, vectors = scifact_chunks(root, Path(args.cache_dir), work)
        log(f"SciFact: {chunks.height} chunks in {time.perf_counter() - t:.0f} s")
        queries = [json.loads(line)["text"] for line in (root / "queries.jsonl").read_text().splitlines()][: args.queries]
        embedder = EmbedderResource(cache_dir=args.cache_dir).embedder()
        embedder.embed_queries(queries[:3])  # model loaded
        embed_times = []
        for q in queries:
            t = time.perf_counter()
            embedder.embed_queries([q])
            embed_times.append(time.perf_counter() - t)
        qvecs = np.asarray(embedder.embed_queries(queries), dtype=np.float32)
        out = {"machine": machine(), "scifact_chunks": chunks.height, "query_embedding": percentiles(embed_times),
               "load_avg_start": load_average()}
        if args.reuse:
            out["synthetic_reused"] = measure_existing(work / "milvus-synthetic", "synthetic", queries[: args.synthetic_queries or args.queries],
                                                       qvecs, modes)
            print(json.dumps(out))
            return
        if args.real_chunks:
            out["real"] = measure("real", copies(chunks, vectors, args.real_chunks), work, queries, qvecs)
            log(f"real: {json.dumps(out['real']['latency'])}")
        if args.chunks:
            out["synthetic"] = measure("synthetic", timeboxed(synthetic(chunks, args.chunks, args.source_size), args.max_build_s), work,
                                       queries[: args.synthetic_queries or args.queries], qvecs, args.max_rss_mb)
        out["load_avg_end"] = load_average()
        print(json.dumps(out))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
