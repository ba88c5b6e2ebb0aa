"""`experiment_report`: an experiment's variants compared, as Markdown and a table in the UI (what `rag experiment compare` prints)."""


import dagster as dg

from rag_assets.ingest.versions import CODE_VERSIONS


class ReportConfig(dg.Config):
    experiment: str  # the `experiment` run tag of the evaluation runs to compare


@dg.asset(
    group_name="evaluation",
    kinds={"python"},
    code_version=CODE_VERSIONS["experiment_report"],
    deps=[dg.AssetDep("evaluation", partition_mapping=dg.AllPartitionMapping())],
    description="One experiment's variants side by side: nDCG@10, Recall@100, MRR@10, latency, embedding seconds, LLM cost "
    "and the data versions each was built from; the best variant marked. Read from the instance's materialization history.",
)
def experiment_report(context: dg.AssetExecutionContext, config: ReportConfig) -> dg.MaterializeResult:
    from rag_assets.experiments.compare import comparison, fetch_rows_from_instance, to_markdown, to_table_metadata

    rows = fetch_rows_from_instance(context.instance, config.experiment)
    if not rows:
        raise dg.Failure(f"no evaluation runs tagged experiment={config.experiment!r}: run `rag experiment run FILE` first")
    result = comparison(rows, config.experiment)
    return dg.MaterializeResult(metadata={
        "experiment": config.experiment,
        "variants": len({r["variant"] for r in rows}),
        "report": dg.MetadataValue.md(to_markdown(result)),
        "table": to_table_metadata(result),
    })
