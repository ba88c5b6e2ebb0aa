"""`ask_job`: multi-query RAG as a Dagster run.

retrieve_original -> rephrase (fast tier) -> retrieve_all (every rewrite, RRF de-duplication)
-> verify (optional, fast tier) -> answer (strong tier, numbered sources). The question's
sensitivity is decided by what it retrieves: if any candidate source is sensitive, the rewrites and
the answer stay on non-external models. In-process executor: one process, models loaded once.

Chunk text of sensitive sources stays out of the run's logs and metadata: the metadata shows their
titles and links, not their snippets (the saved answer under `$RAG_HOME/answers/` keeps them). The run
is tagged with every source it retrieved from, so purging a source also deletes the run and its files.
"""

import time
from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from rag_assets.deployment import run_placement
from rag_assets.ingest.variant_embedder import model_of
from rag_assets.models.ranker_asset import trained_ranker
from rag_assets.storage import collection_for
from rag_assets.variants import DEFAULT_VARIANT, VariantSettings, get_variant
from rag_assets.inference.multi_query import (
    CONTEXT_CHARS, REPHRASINGS, AskResult, Source, any_sensitive, answer_prompt, answer_stops, default_rephrasings, rewrite_question,
    rrf_fuse, sensitive_sources, verify_prompt,
)
from rag_assets.inference.answer_stream import RunLogStream
from rag_assets.inference.results import save_result, source_tag
from rag_assets.llm.providers import DEFAULT_MODELS
from rag_assets.metadata import frame_table
from rag_assets.retrieval import Hit, RetrievalSettings, Retriever
from rag_assets.run_worker import run_imports
from rag_assets.settings import rag_home
from resources import EmbedderResource, MilvusResource, SourcesResource
from resources.llm import LLMResource

IO = "inference_io"
CANDIDATES_PER_QUERY = 20
# what the steps import on first use: the model servers' and providers' clients (`openai` serves the local model's
# server too), the embedding server's client, pymilvus's sparse results; a warm run worker imports them ahead
RUN_IMPORTS = ("openai", "httpx", "httpcore", "scipy.sparse", "rag_assets.embedding.server")


class AskConfig(dg.Config):
    question: str
    top_k: int = 5
    # rewrites of the question to retrieve with; None: 3, or none when they would come from the bundled local model
    # (its rewrites made the sources worse: `default_rephrasings`)
    n_rephrasings: int | None = Field(default=None, ge=0)
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    sources: list[str] = []
    verify: bool = False
    max_tokens: int = 256
    # source text in the answer prompt, all sources together; 0: the chunks whole; None: CONTEXT_CHARS when the answer
    # goes to the local model first (it reads about 400 prompt tokens a second on 2 cores), else whole
    context_chars: int | None = Field(default=None, ge=0)
    variant: str = DEFAULT_VARIANT  # whose index (embedding model, chunking) and fusion to search


def retriever_for(milvus: MilvusResource, embedder: EmbedderResource, variant: VariantSettings | None = None) -> Retriever:
    """A retriever over the variant's collection, embedding queries with the variant's model."""
    variant = variant or get_variant(DEFAULT_VARIANT)
    embedder = model_of(embedder, variant)
    name = collection_for(variant, embedder.model_id)
    return Retriever(milvus.client(), name, embedder.embed_queries, calibration_path=rag_home() / "fusion" / f"{name}.json",
                     ranker=trained_ranker(variant))


def tag_sources(context: dg.OpExecutionContext, hits: list[Hit]) -> None:
    """Tag the run with each source whose text it holds (before the text is stored anywhere)."""
    if hits:
        context.instance.add_run_tags(context.run_id, {source_tag(h.source): "true" for h in hits})


def public_result(result: dict, sensitive_chunks: set[str]) -> dict:
    """The result as shown in run metadata: the snippets of sensitive chunks withheld."""
    return {**result, "sources": [{**s, "snippet": "" if s["chunk_id"] in sensitive_chunks else s["snippet"]} for s in result["sources"]]}


def _search(milvus: MilvusResource, embedder: EmbedderResource, plan: dict, queries: list[str]) -> list[list[Hit]]:
    variant = get_variant(plan.get("variant") or DEFAULT_VARIANT)
    settings = RetrievalSettings(mode=plan["mode"], top_k=CANDIDATES_PER_QUERY, fusion=variant.fusion, dense_weight=variant.dense_weight)
    return retriever_for(milvus, embedder, variant).search(queries, settings, sources=plan["sources"] or None)


@dg.op(out=dg.Out(io_manager_key=IO), description="Retrieve for the question as asked; decides its sensitivity.")
def retrieve_original(context: dg.OpExecutionContext, config: AskConfig, milvus: MilvusResource, embedder: EmbedderResource,
                      sources: SourcesResource) -> dict:
    started = time.perf_counter()
    plan = config.model_dump()
    plan["hits"] = _search(milvus, embedder, plan, [config.question])[0]
    tag_sources(context, plan["hits"])
    names = sensitive_sources(sources)  # sources.yaml may mark a source sensitive before it is re-ingested
    plan["sensitive_sources"] = None if names is None else sorted(names)
    plan["sensitive"] = any_sensitive(plan["hits"], plan["sensitive_sources"])
    plan["timings"] = {"retrieve_original_s": round(time.perf_counter() - started, 3)}
    context.log.info(f"{len(plan['hits'])} candidates; sensitive={plan['sensitive']}")
    return plan


@dg.op(out=dg.Out(io_manager_key=IO), description="Rewrite the question n ways with the fast tier.")
def rephrase(context: dg.OpExecutionContext, plan: dict, llm: LLMResource) -> list[str]:
    started = time.perf_counter()
    n = plan["n_rephrasings"]
    if n is None:
        provider, model = llm.first_model("fast", plan["sensitive"], 32 * REPHRASINGS)
        n = default_rephrasings(provider, model, DEFAULT_MODELS["local"])
        if n == 0:
            context.log.info(f"no rewrites: the fast tier is the bundled {model}, whose rewrites made the sources worse "
                             "(n_rephrasings asks for them)")
    rewrites = rewrite_question(llm.complete, plan["question"], n, plan["sensitive"])
    context.log.info(f"rewrites ({time.perf_counter() - started:.2f}s): {rewrites}")
    return rewrites


@dg.op(out=dg.Out(io_manager_key=IO), description="Retrieve for every rewrite; de-duplicate and rank by reciprocal rank fusion.")
def retrieve_all(context: dg.OpExecutionContext, plan: dict, rewrites: list[str], milvus: MilvusResource, embedder: EmbedderResource) -> dict:
    started = time.perf_counter()
    rankings = [plan["hits"]] + (_search(milvus, embedder, plan, rewrites) if rewrites else [])
    fused = rrf_fuse(rankings, plan["top_k"])
    tag_sources(context, fused)
    return {"hits": fused, "rewrites": rewrites, "retrieve_all_s": round(time.perf_counter() - started, 3),
            "sensitive": plan["sensitive"] or any_sensitive(fused, plan["sensitive_sources"])}


@dg.op(out=dg.Out(io_manager_key=IO), description="Optionally drop sources the fast tier judges irrelevant.")
def verify(plan: dict, ranked: dict, llm: LLMResource) -> dict:
    if not plan["verify"] or not ranked["hits"]:
        return {**ranked, "verify_s": 0.0}
    started = time.perf_counter()
    kept = [h for h in ranked["hits"]
            if "no" not in llm.complete(verify_prompt(plan["question"], h), tier="fast", sensitive=ranked["sensitive"],
                                        max_tokens=3, stop=["\n"]).text.strip().lower()[:3]]
    return {**ranked, "hits": kept or ranked["hits"][:1], "verify_s": round(time.perf_counter() - started, 3)}


@dg.op(out=dg.Out(io_manager_key=IO), description="Answer from the numbered sources with the strong tier.")
def answer_question(context: dg.OpExecutionContext, plan: dict, ranked: dict, llm: LLMResource):
    started = time.perf_counter()
    hits: list[Hit] = ranked["hits"]
    stream = RunLogStream(context.log.info)  # the answer's pieces in the run log as they come (`rag ask` prints them)
    if hits:
        budget = plan["context_chars"]
        if budget is None:
            local = llm.first_provider("strong", ranked["sensitive"], plan["max_tokens"]) == "local"
            budget = CONTEXT_CHARS if local else 0
        system, prompt = answer_prompt(plan["question"], hits, ranked["rewrites"], budget)
        text = llm.complete(prompt, tier="strong", system=system, sensitive=ranked["sensitive"],
                            max_tokens=plan["max_tokens"], stop=answer_stops(len(hits)), stream=stream).text.strip()
    else:
        text = "No indexed document matches this question."
        stream.write(text)
    stream.close()
    timings = {**plan["timings"], "retrieve_all_s": ranked["retrieve_all_s"], "verify_s": ranked.get("verify_s", 0.0),
               "answer_s": round(time.perf_counter() - started, 3)}
    if stream.first_piece_s is not None:
        timings["answer_first_token_s"] = round(stream.first_piece_s, 3)  # from the answer step's start
    timings["llm_s"] = round(llm.ledger.totals()["llm_latency_s"], 3)
    result = AskResult(plan["question"], text, [Source.from_hit(h) for h in hits], ranked["rewrites"], timings,
                       llm.ledger.totals(), context.run_id)
    save_result("answers", result.run_id, result.to_dict())
    sources = pl.DataFrame([{"n": i + 1, "title": s.title, "link": s.link, "score": s.score} for i, s in enumerate(result.sources)])
    shown = public_result(result.to_dict(), {h.chunk_id for h in hits if any_sensitive([h], plan["sensitive_sources"])})
    yield dg.Output(
        result.to_dict(),
        metadata={
            "answer": dg.MetadataValue.md(f"**{plan['question']}**\n\n{text}"),
            "sources": frame_table(sources) if hits else dg.MetadataValue.md("_none_"),
            "result": dg.MetadataValue.json(shown),
            **{k: v for k, v in llm.metadata().items() if k != "llm_models"},
        },
    )


@dg.job(executor_def=dg.in_process_executor, tags={"rag/kind": "ask", **run_placement("inference")},
        metadata=run_imports(*RUN_IMPORTS),
        description="Multi-query RAG: rephrase, retrieve for each, de-duplicate, rank, answer with sources.")
def ask_job():
    plan = retrieve_original()
    ranked = retrieve_all(plan, rephrase(plan))
    answer_question(plan, verify(plan, ranked))
