"""`sql_job`: a question about a DuckDB database answered with one validated, read-only query.

reword (fast tier) -> search_schema (every version of the question against the schema index)
-> generate_sql (strong tier, prompt built from the relevant tables) -> validate_and_run (sqlglot
guard, read-only DuckDB with a timeout and row limit) -> answer (the SQL and its result table).
A refused or failed query ends the run normally, its reason in the result's `error`.

No prompt carries a sensitive source's text: the rewrites see the question only, the SQL prompt sees the
schema with sample values from public rows only (sources marked sensitive in the warehouse or in
`sources.yaml` now give none), and the query's rows never go to a model (`answer` only formats them).

The query is written under a constraint (`assistant.sql_constraint`): a grammar over the retrieved tables'
real columns for the local model, structured outputs elsewhere; the guard checks it all the same. The
prompt leads with the worked examples nearest the question (`examples.pick_examples`). `generator` picks how
(`plan.PLANS`): under the grammar of the nearest example's query shape (the default), of the shape the model
names first, or one grammar for every question.
"""

import time
from dataclasses import asdict
from pathlib import Path

import dagster as dg

from rag_assets.deployment import run_placement
from rag_assets.inference.multi_query import rewrite_question, sensitive_sources
from rag_assets.inference.sql import assistant
from rag_assets.inference.sql.assets import build_from_platform, open_schema_index
from rag_assets.inference.sql.examples import pick_examples
from rag_assets.inference.sql.plan import PLANS
from rag_assets.inference.sql.resource import WarehouseResource
from rag_assets.inference.results import save_result
from rag_assets.io_manager import PolarsParquetIOManager
from rag_assets.run_worker import run_imports
from rag_assets.variants import DEFAULT_VARIANT, VariantError, get_variant
from resources import EmbedderResource, MilvusResource, SourcesResource
from resources.llm import LLMResource

IO = "inference_io"


class SqlConfig(dg.Config):
    """A question for the SQL assistant.

    `variant` pins the run's LLM provider (its `llm_provider`, when set) and, for any variant but the
    default, its `n_rephrasings` (which then replaces this config's). The warehouse and the schema index
    are shared by all variants: they describe the platform, not a variant's ingestion settings."""

    question: str
    database: str = ""  # a DuckDB file to ask about; empty: the platform's warehouse
    variant: str = DEFAULT_VARIANT
    n_rephrasings: int = 3
    max_tables: int = 3  # tables of the schema put in the prompt
    max_rows: int = 100
    query_timeout_s: float = 10.0  # seconds the query may run
    max_tokens: int = 256
    sensitive: bool = False  # keep this question's prompts on non-external models
    generator: str = "example-shape"  # one of plan.PLANS: example-shape, two-step (the model names the shape first), one-step, agg-first


def _seconds(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def variant_plan(config: SqlConfig) -> dict:
    """The run's plan: the config with the variant's settings applied; a `dg.Failure` (one line) for an unknown variant."""
    try:
        variant = get_variant(config.variant)
    except VariantError as exc:
        raise dg.Failure(description=str(exc)) from exc
    if config.generator not in PLANS:
        raise dg.Failure(description=f"unknown generator {config.generator!r}; one of {', '.join(PLANS)}")
    plan = config.model_dump()
    if variant.name != DEFAULT_VARIANT:
        plan["n_rephrasings"] = variant.n_rephrasings
    plan["llm_provider"] = variant.llm_provider
    plan["variant_settings"] = variant.settings()
    return plan


def run_llm(plan: dict, llm: LLMResource) -> LLMResource:
    """The run's LLM: pinned to the variant's provider when it names one."""
    return llm.pinned_to(plan.get("llm_provider", ""))


@dg.op(out=dg.Out(io_manager_key=IO), description="Reword the question n ways with the fast tier.")
def reword(context: dg.OpExecutionContext, config: SqlConfig, llm: LLMResource) -> dict:
    started = time.perf_counter()
    plan = variant_plan(config)  # before any model loads
    context.log.info(f"variant {config.variant}: {plan['n_rephrasings']} rephrasings, LLM {plan['llm_provider'] or 'by policy'}")
    plan["rewrites"] = rewrite_question(run_llm(plan, llm).complete, config.question, plan["n_rephrasings"], config.sensitive)
    plan["timings"] = {"reword_s": _seconds(started)}
    context.log.info(f"rewrites: {plan['rewrites']}")
    return plan


@dg.op(out=dg.Out(io_manager_key=IO), description="Search the schema index with every version of the question; keep the relevant tables.")
def search_schema(context: dg.OpExecutionContext, plan: dict, milvus: MilvusResource, embedder: EmbedderResource,
                  warehouse_db: WarehouseResource, sources: SourcesResource,
                  io_manager: dg.ResourceParam[PolarsParquetIOManager]) -> dict:
    started = time.perf_counter()
    path = Path(plan["database"]).resolve() if plan["database"] else warehouse_db.resolved_path
    if not path.is_file():
        if plan["database"]:
            raise dg.Failure(description=f"no DuckDB database at {path}")
        context.log.info(f"no warehouse at {path} yet: building it")
        build_from_platform(warehouse_db, io_manager, sources, context.instance)
    withheld = sensitive_sources(sources)
    if withheld is None:
        context.log.warning(f"{sources.file} cannot be read: no sample values from any source's rows in the prompt")
    index = open_schema_index(milvus, embedder)
    schema = assistant.select_schema(index, path, [plan["question"], *plan["rewrites"]], plan["max_tables"], withheld)
    context.log.info(f"tables for the prompt: {schema.tables} (of {len(schema.known_tables)}); index sync {schema.indexed}")
    return {**asdict(schema), "examples": pick_examples(plan["question"]), "search_s": _seconds(started)}


@dg.op(out=dg.Out(io_manager_key=IO), description="Write the SQL with the strong tier from the relevant schema.")
def generate_sql(context: dg.OpExecutionContext, plan: dict, schema: dict, llm: LLMResource) -> dict:
    started = time.perf_counter()
    complete, generator = run_llm(plan, llm).complete, plan.get("generator", "example-shape")
    shape, raw, sql = assistant.write_sql(complete, plan["question"], schema["schema"], plan["sensitive"], schema.get("columns"),
                                          generator, plan["max_tokens"], examples=schema.get("examples"))
    if generator in assistant.SHAPED_PLANS:
        context.log.info(f"query shape: {shape or 'none (one-step grammar)'}")
    context.log.info(f"generated: {sql}")
    return {"raw": raw, "sql": sql, "generate_s": _seconds(started)}


@dg.op(out=dg.Out(io_manager_key=IO), description="Validate the SQL (one SELECT over known tables) and run it read-only with a timeout and row limit.")
def validate_and_run(context: dg.OpExecutionContext, plan: dict, schema: dict, generated: dict) -> dict:
    outcome = assistant.check_and_run(Path(schema["database"]), generated["sql"], plan["max_rows"], plan["query_timeout_s"], schema["known_tables"])
    if outcome.ok:
        context.log.info(f"{len(outcome.rows)} rows{' (truncated)' if outcome.truncated else ''} in {outcome.seconds}s")
    else:
        context.log.warning(outcome.error)
    return asdict(outcome)


@dg.op(out=dg.Out(io_manager_key=IO), description="Answer with the SQL and its result table.")
def answer(context: dg.OpExecutionContext, plan: dict, schema: dict, generated: dict, outcome: dict, llm: LLMResource):
    llm = run_llm(plan, llm)
    result_outcome = assistant.Outcome(**outcome)
    timings = {**plan["timings"], "search_s": schema["search_s"], "generate_s": generated["generate_s"], "execute_s": outcome["seconds"],
               "llm_s": round(llm.ledger.totals()["llm_latency_s"], 3)}
    result = assistant.SqlResult(
        question=plan["question"], answer=assistant.answer_text(result_outcome), sql=outcome["sql"], columns=outcome["columns"],
        rows=outcome["rows"], truncated=outcome["truncated"], error=outcome["error"], error_kind=outcome["error_kind"],
        database=schema["database"], tables=schema["tables"], rewrites=plan["rewrites"], raw_sql=generated["raw"],
        timings=timings, llm=llm.ledger.totals(), run_id=context.run_id, variant=plan["variant"],
    )
    save_result("sql_answers", result.run_id, result.to_dict())
    yield dg.Output(
        result.to_dict(),
        metadata={
            "question": plan["question"],
            "status": outcome["error_kind"] or "ok",
            "sql": dg.MetadataValue.md(f"```sql\n{outcome['sql']}\n```"),
            "table": dg.MetadataValue.md(result.answer),
            "rows": len(result.rows),
            "variant": plan["variant"],
            "variant_settings": dg.MetadataValue.json(plan["variant_settings"]),
            "result": dg.MetadataValue.json(result.to_dict()),
            **{k: v for k, v in llm.metadata().items() if k != "llm_models"},
        },
    )


@dg.job(executor_def=dg.in_process_executor, tags={"rag/kind": "sql", **run_placement("inference")},
        metadata=run_imports("openai", "httpx", "httpcore", "sqlglot", "scipy.sparse", "rag_assets.embedding.server"),
        description="SQL assistant: reword, search the schema index, write SQL, validate, run read-only, answer with the table.")
def sql_job():
    plan = reword()
    schema = search_schema(plan)
    generated = generate_sql(plan, schema)
    answer(plan, schema, generated, validate_and_run(plan, schema, generated))
