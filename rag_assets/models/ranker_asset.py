"""`ranker_model`: the learned hybrid ranker (rag_assets.ranker), trained on a labeled BEIR split as an asset.

Training needs both retrievers' candidate lists for the split's queries, so the dataset is ingested first
through the ingestion assets (in-process, into a temporary folder; embeddings come from the shared cache)
and searched with the configured embedding model. The op is tagged for a GPU like the embedding op. The
model is JSON at `storage.ranker_path()`; variants with `fusion: ranker` load it.
"""

import tempfile
import time
from pathlib import Path

import dagster as dg
import polars as pl

from rag_assets.ingest.k8s import placement
from rag_assets.ingest.versions import CODE_VERSIONS
from rag_assets.ranker import RankerModel
from rag_assets.storage import collection_name, names_for, ranker_path
from rag_assets.variants import DEFAULT_SETTINGS, VariantSettings
from resources import EmbedderResource

SOURCE = "ranker-training"


class RankerConfig(dg.Config):
    dataset: str  # a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), e.g. SciFact
    split: str = "train"
    eval_split: str = "test"  # scored after training, `auto` vs the ranker (empty: skip)


def trained_ranker(variant: VariantSettings) -> RankerModel | None:
    """The trained model for a `fusion: ranker` variant (None for other fusions); a clear error if it is missing."""
    if variant.fusion != "ranker":
        return None
    path = ranker_path()
    if not path.is_file():
        raise FileNotFoundError(f"variant {variant.name!r} fuses with the trained ranker, but there is none at {path}: "
                                "materialize the `ranker_model` asset first")
    return RankerModel.load(path)


@dg.asset(
    group_name="models",
    kinds={"python", "numpy"},
    code_version=CODE_VERSIONS["ranker_model"],
    op_tags=placement("training"),
    description="A learned ranker over dense and BM25 candidates (pairwise logistic, linear), fitted on a labeled BEIR "
    "split; its held-out nDCG@10 against the untrained `auto` hybrid is recorded, gain or not. `fusion: ranker` uses it.",
)
def ranker_model(context: dg.AssetExecutionContext, config: RankerConfig, embedder: EmbedderResource) -> dg.MaterializeResult:
    from rag_assets.eval.beir import check_beir, load_beir
    from rag_assets.eval.metrics import evaluate
    from rag_assets.eval.run import retrieve_run
    from rag_assets.pipeline import Workspace
    from rag_assets.ranker import train_ranker
    from rag_assets.retrieval import RetrievalSettings, Retriever

    dataset = Path(config.dataset).resolve()
    check_beir(dataset, config.split)
    started = time.perf_counter()
    scores = {}
    with tempfile.TemporaryDirectory(prefix="rag-ranker-") as tmp:
        ws = Workspace(root=Path(tmp), cache_dir=embedder.cache_root)
        ws.write_sources([{"name": SOURCE, "kind": "beir", "paths": [str(dataset)], "schedule": "manual", "max_file_mb": 16_384}])
        ws.materialize(SOURCE, embedder=embedder)
        resources = ws.resources(embedder)
        client = resources["milvus"].client()
        retriever = Retriever(client, collection_name(embedder.model_id), embedder.embed_queries)
        model, report = train_ranker(dataset, retriever, config.split)
        context.log.info(f"trained on {report['queries']} queries, {report['candidates']} candidates")
        if config.eval_split:
            docs = pl.read_parquet(resources["io_manager"].stored_path("documents", names_for(SOURCE, DEFAULT_SETTINGS)))
            to_id = dict(zip(docs["doc_id"].to_list(), docs["locator"].to_list()))
            data = load_beir(dataset, config.eval_split)
            ranked = Retriever(client, collection_name(embedder.model_id), embedder.embed_queries, ranker=model)
            for fusion in ("auto", "ranker"):
                settings = RetrievalSettings(mode="hybrid", fusion=fusion, top_k=400, candidates=400)
                scores[fusion] = round(evaluate(retrieve_run(ranked, data.queries, settings, to_id), data.qrels)["ndcg_at_10"], 4)
        client.close()
    path = ranker_path()
    model.save(path)
    metadata = {"path": dg.MetadataValue.path(str(path)), "dataset": str(dataset), "embedding_model": embedder.model_id,
                **{k: v for k, v in report.items() if isinstance(v, (int, float, str))},
                "train_seconds": round(time.perf_counter() - started, 1)}
    for fusion, value in scores.items():
        metadata[f"{config.eval_split}_ndcg@10_{fusion}"] = value
    if scores:
        metadata["gain_over_auto"] = round(scores["ranker"] - scores["auto"], 4)
    return dg.MaterializeResult(data_version=dg.DataVersion(model.data_version), metadata=metadata)
