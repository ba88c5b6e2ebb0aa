"""Where the warehouse lives, and how it is (re)built from the platform's files and run records."""

from pathlib import Path

import dagster as dg

from rag_assets.inference.sql.warehouse import build_warehouse, load_asset_frames, read_eval_results, run_rows
from rag_assets.settings import rag_home


class WarehouseResource(dg.ConfigurableResource):
    """`path`: the warehouse DuckDB file (default `$RAG_HOME/warehouse.duckdb`); `eval_results`: the
    JSON lines `rag eval` appends to (default `$RAG_HOME/eval_results.jsonl`)."""

    path: str = ""
    eval_results: str = ""

    @property
    def resolved_path(self) -> Path:
        return Path(self.path).resolve() if self.path else rag_home() / "warehouse.duckdb"

    @property
    def eval_results_path(self) -> Path:
        return Path(self.eval_results).resolve() if self.eval_results else rag_home() / "eval_results.jsonl"

    def build(self, assets_dir: Path, specs: list, instance: dg.DagsterInstance | None) -> dict[str, int]:
        """Rebuild the warehouse from the stored `documents`/`chunks` partitions, the source specs,
        the instance's runs and the evaluation results; returns row counts by table."""
        documents, chunks = load_asset_frames(assets_dir)
        runs = run_rows(instance) if instance is not None else []
        return build_warehouse(self.resolved_path, documents, chunks, specs, runs, read_eval_results(self.eval_results_path))
