"""Run the ingestion assets in-process for one source (used by `rag eval`, benchmarks and tests)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from rag_assets.ingest.chunks import chunks
from rag_assets.ingest.documents import documents
from rag_assets.ingest.embeddings import embeddings
from rag_assets.ingest.index import index
from rag_assets.ingest.partitions import SOURCES_PARTITION, VARIANTS_PARTITION, partition_key
from rag_assets.io_manager import PolarsParquetIOManager
from rag_assets.jobs import INGEST_ASSETS as INGEST_ASSET_NAMES
from rag_assets.variants import DEFAULT_VARIANT
from resources import EmbedderResource, MilvusResource, SourcesResource

INGEST_ASSETS = [{a.key.path[-1]: a for a in (documents, chunks, embeddings, index)}[name] for name in INGEST_ASSET_NAMES]
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
STAGE_SECONDS = {"documents": "load_seconds", "chunks": "chunk_seconds", "embeddings": "embed_seconds", "index": "sync_seconds"}


@dataclass
class Workspace:
    """Everything one in-process pipeline needs: a folder, its resources, a Dagster instance."""

    root: Path
    cache_dir: Path | None = None
    milvus_uri: str = ""
    instance: dg.DagsterInstance = field(default_factory=dg.DagsterInstance.ephemeral)

    @property
    def sources_file(self) -> Path:
        return self.root / "sources.yaml"

    def write_sources(self, sources: list[dict]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sources_file.write_text(yaml.safe_dump({"sources": sources}, sort_keys=False), encoding="utf-8")

    def resources(self, embedder: EmbedderResource | None = None) -> dict:
        return {
            "io_manager": PolarsParquetIOManager(base_dir=str(self.root / "assets")),
            "embedder": embedder or EmbedderResource(cache_dir=str(self.cache_dir or self.root / "embedding_cache")),
            "milvus": MilvusResource(uri=self.milvus_uri or str(self.root / "milvus.db")),
            "sources": SourcesResource(path=str(self.sources_file)),
        }

    def add_partition(self, source: str, variant: str = DEFAULT_VARIANT) -> dg.MultiPartitionKey:
        """Register the source and the variant as dynamic partitions (as the sensor and `rag experiment` do)."""
        for name, key in ((SOURCES_PARTITION, source), (VARIANTS_PARTITION, variant)):
            if not self.instance.has_dynamic_partition(name, key):
                self.instance.add_dynamic_partitions(name, [key])
        return partition_key(source, variant)

    def materialize(self, source: str, run_config: dict | None = None, embedder: EmbedderResource | None = None,
                    selection: list | None = None, variant: str = DEFAULT_VARIANT, assets: list | None = None) -> "IngestReport":
        """Materialize the ingestion assets (or `selection` of them, or other `assets`) for one source under one
        variant (registered in the variants registry); raises if the run fails."""
        key = self.add_partition(source, variant)
        started = time.perf_counter()
        result = dg.materialize(
            assets or INGEST_ASSETS, selection=selection, partition_key=key, instance=self.instance,
            resources=self.resources(embedder), run_config={**QUIET_LOGS, **(run_config or {})},
        )
        return IngestReport.from_result(result, time.perf_counter() - started)


@dataclass
class IngestReport:
    seconds: float
    metadata: dict[str, dict]  # asset -> its materialization metadata (plain values)
    checks: dict[str, bool]  # "asset:check" -> passed

    @classmethod
    def from_result(cls, result: dg.ExecuteInProcessResult, seconds: float) -> "IngestReport":
        metadata = {}
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization
            metadata[mat.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        checks = {
            f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in result.get_asset_check_evaluations()
        }
        return cls(seconds=seconds, metadata=metadata, checks=checks)

    def stage_seconds(self) -> dict[str, float]:
        return {asset: float(self.metadata.get(asset, {}).get(key, 0.0)) for asset, key in STAGE_SECONDS.items()}
