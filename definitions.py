"""The one Dagster `Definitions` of the rag-assets code location."""

from __future__ import annotations

import os

import dagster as dg

from rag_assets.deployment import executor_def, load_settings as read_deployment_settings
from rag_assets.ingest.chunks import chunks
from rag_assets.ingest.documents import documents
from rag_assets.ingest.embeddings import embeddings
from rag_assets.ingest.index import index
from rag_assets.inference.ask_job import ask_job
from rag_assets.inference.sql.assets import schema_index, warehouse
from rag_assets.inference.sql.job import sql_job
from rag_assets.experiments.evaluation import evaluation
from rag_assets.experiments.report import experiment_report
from rag_assets.models.assets import embedding_model, llm_model
from rag_assets.models.ranker_asset import ranker_model
from rag_assets.inference.sql.resource import WarehouseResource
from rag_assets.ingest.purge import purge_job
from rag_assets.io_manager import PolarsParquetIOManager
from rag_assets.settings import rag_home
from resources import EmbedderResource, MilvusResource, SourcesResource
from resources.llm import LLMResource
from sensors import evaluation_sensor, nightly_reingest, sources_sensor, sql_refresh_sensor
from rag_assets.jobs import experiment_job, ingest_job, models_job, report_job


def choose_executor() -> dg.ExecutorDefinition:
    """The deployment settings' executor (deploy/settings.yaml, `$RAG_EXECUTOR` overriding it): multiprocess in dev,
    `k8s_job_executor` (a pod per step, placed by its op tags) under a K8sRunLauncher."""
    return executor_def(read_deployment_settings())


def env_secret(name: str) -> dg.EnvVar | str:
    """A secret as `dg.EnvVar` (resolved at run time, never shown) when set; empty otherwise."""
    return dg.EnvVar(name) if os.environ.get(name) else ""


def default_resources() -> dict:
    return {
        "llm": LLMResource(openai_api_key=env_secret("OPENAI_API_KEY"), gemini_api_key=env_secret("GEMINI_API_KEY")),
        "io_manager": PolarsParquetIOManager(base_dir=os.environ.get("RAG_ASSETS_DIR", "")),
        "embedder": EmbedderResource(),
        "milvus": MilvusResource(uri=os.environ.get("RAG_MILVUS_URI", ""), token=env_secret("RAG_MILVUS_TOKEN")),
        "sources": SourcesResource(path=os.environ.get("RAG_SOURCES", "")),
        "inference_io": dg.FilesystemIOManager(base_dir=str(rag_home() / "inference")),  # per-run paths
        "warehouse_db": WarehouseResource(path=os.environ.get("RAG_WAREHOUSE", "")),
    }


defs = dg.Definitions(
    assets=[documents, chunks, embeddings, index, warehouse, schema_index, embedding_model, llm_model, ranker_model, evaluation, experiment_report],
    jobs=[ingest_job, experiment_job, models_job, report_job, purge_job, ask_job, sql_job],
    sensors=[sources_sensor, sql_refresh_sensor, evaluation_sensor],
    schedules=[nightly_reingest],
    resources=default_resources(),
    executor=choose_executor(),
)
