"""`evaluation`: retrieval quality and latency of one (source, variant) against the source's labeled set.

Re-materialized when the partition's index changes (declarative automation); its check fails (ERROR)
when nDCG@10 drops more than 0.02 below the variant's last accepted value.
"""


import time

import dagster as dg
import polars as pl

from rag_assets.eval.scoring import score_retrieval
from rag_assets.experiments.history import data_versions, latest_metadata
from rag_assets.ingest.partitions import IngestPartition, ingest_partitions, split_key
from rag_assets.ingest.variant_embedder import embedder_for
from rag_assets.ingest.versions import CODE_VERSIONS
from rag_assets.models.ranker_asset import trained_ranker
from rag_assets.retrieval import RetrievalSettings, Retriever
from resources import EmbedderResource, MilvusResource, SourcesResource

NDCG_NOT_REGRESSED = "ndcg_not_regressed"
TOLERANCE = 0.02
INPUTS = ["documents", "chunks", "embeddings", "index"]


class SourceHasLabels(dg.AutomationCondition):
    """True for the `<source>|<variant>` partitions whose source declares a labeled set in sources.yaml: the
    others are never evaluated automatically (there is nothing to score them against)."""

    @property
    def name(self) -> str:
        return "source_has_labels"

    @property
    def description(self) -> str:
        return "its source declares `labels` in sources.yaml"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        try:
            resource = SourcesResource()
            labeled = {name for name, spec in resource.specs().items() if spec.labels_dir(resource.base_dir)}
        except (OSError, ValueError):  # an unreadable sources.yaml: evaluate nothing this tick
            labeled = set()
        keys = {k for k in context.candidate_subset.expensively_compute_partition_keys() if split_key(k)[0] in labeled}
        subset = context.asset_graph_view.compute_intersection_with_partition_keys(keys, context.candidate_subset)
        return dg.AutomationResult(context=context, true_subset=subset)


AFTER_INDEX_CHANGE = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & SourceHasLabels()
).with_label("after its index changes, if its source has labels")


class EvaluationConfig(dg.Config):
    labels: str = ""  # a BEIR-format labeled set; empty = the source's `labels` in sources.yaml
    split: str = "test"
    accept: bool = False  # accept this run's nDCG@10 as the new baseline even if it regressed


def regression_check(ndcg: float, accepted: float | None, accept: bool) -> tuple[bool, float]:
    """(passed, the accepted value after this run): fails when nDCG@10 falls more than TOLERANCE below the last
    accepted value; a passing (or explicitly accepted) run becomes the new accepted value."""
    passed = accepted is None or ndcg >= accepted - TOLERANCE
    return passed, ndcg if (passed or accept) else accepted


@dg.asset(
    partitions_def=ingest_partitions,
    group_name="evaluation",
    kinds={"python", "milvus"},
    code_version=CODE_VERSIONS["evaluation"],
    deps=["index"],
    automation_condition=AFTER_INDEX_CHANGE,
    description="Retrieval quality of the variant on the source's labeled set (BEIR format): nDCG@10, Recall@100, "
    "MRR@10, p50/p95 latency of one search, embedding seconds, LLM cost; with the settings and data versions it was built from.",
    check_specs=[dg.AssetCheckSpec(NDCG_NOT_REGRESSED, asset="evaluation", blocking=False,
                                   description=f"nDCG@10 is at most {TOLERANCE} below the variant's last accepted value.")],
)
def evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, embedder: EmbedderResource, milvus: MilvusResource,
               sources: SourcesResource, documents: pl.DataFrame):
    from rag_assets.eval.labels import labels_match_documents, load_labels

    part = IngestPartition.of(context.partition_key)
    spec = sources.spec(part.source)
    labels_dir = (sources.base_dir / config.labels).resolve() if config.labels else spec.labels_dir(sources.base_dir)
    if labels_dir is None:
        raise dg.Failure(f"source {part.source!r} has no labeled set: add `labels: <folder>` to it in {sources.file} "
                         "(queries.jsonl + qrels/<split>.tsv whose corpus ids are its documents' locators), or pass one in run config")
    labels = load_labels(labels_dir, config.split)
    docs = documents.filter(pl.col("error").is_null())
    missing = labels_match_documents(labels, set(docs["locator"].to_list()))
    if missing:
        raise dg.Failure(f"{len(missing)} labeled documents are not in source {part.source!r} (renamed or removed?): {missing[:5]}")

    embedder = embedder_for(embedder, part.variant, part.names)
    collection = part.names.collection(embedder.model_id)
    retriever = Retriever(milvus.client(), collection, embedder.embed_queries, ranker=trained_ranker(part.variant))
    settings = RetrievalSettings(mode=part.variant.retrieval_mode, fusion=part.variant.fusion, dense_weight=part.variant.dense_weight)
    started = time.perf_counter()
    scores = score_retrieval(retriever, labels.queries, labels.qrels, dict(zip(docs["doc_id"], docs["locator"])), settings, part.source)
    key = context.partition_key
    previous = latest_metadata(context.instance, "evaluation", key, before_run=context.run_id)
    accepted_before = previous.get("accepted_ndcg@10")
    passed, accepted = regression_check(scores.metrics["ndcg@10"], accepted_before, config.accept)
    embeddings_meta = latest_metadata(context.instance, "embeddings", key)
    metadata = {
        **scores.metrics,
        "accepted_ndcg@10": accepted,
        "latency_p50_ms": scores.latency(50),
        "latency_p95_ms": scores.latency(95),
        "embed_seconds": float(embeddings_meta.get("embed_seconds", 0.0)),
        "llm_cost_usd": 0.0,  # retrieval evaluation calls no LLM
        "queries": scores.queries,
        "source": part.source,
        "variant": part.variant.name,
        "collection": collection,
        "embedding_model": embedder.model_id,
        "fusion_dense_weight": round(retriever.dense_weight, 4) if settings.fusion == "auto" else settings.dense_weight,
        "eval_set": dg.MetadataValue.path(str(labels_dir)),
        "split": config.split,
        "variant_settings": dg.MetadataValue.json(part.variant.settings()),
        "data_versions": dg.MetadataValue.json(data_versions(context.instance, INPUTS, key)),
        "eval_seconds": round(time.perf_counter() - started, 3),
    }
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[dg.AssetCheckResult(
            check_name=NDCG_NOT_REGRESSED, passed=passed, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"ndcg@10": scores.metrics["ndcg@10"], "last_accepted": accepted_before if accepted_before is not None else -1.0,
                      "tolerance": TOLERANCE})],
    )
