"""A partition-aware IO manager storing Polars frames as Parquet, one file per asset partition."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl

from rag_assets.ingest.partitions import IngestPartition
from rag_assets.settings import rag_home
from rag_assets.storage import StorageNames, unpartitioned_parquet


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    """Parquet files named by `rag_assets.storage` (`{base_dir}/{asset}/{source}[@{ingest key}].parquet`);
    writes are atomic (temp file + rename)."""

    base_dir: str = ""

    def root(self) -> Path:
        return Path(self.base_dir) if self.base_dir else rag_home() / "assets"

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path:
        asset = "/".join(asset_key.path)
        if not partition_key:
            return unpartitioned_parquet(self.root(), asset)
        return IngestPartition.of(partition_key).names.parquet(self.root(), asset)

    def stored_path(self, asset: str, names: StorageNames) -> Path:
        return names.parquet(self.root(), asset)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if obj is None:
            return
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = self.path_for(context.asset_key, partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        obj.write_parquet(tmp)
        os.replace(tmp, path)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), "rows": obj.height})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = self.path_for(context.asset_key, partition)
        if not path.exists():
            raise FileNotFoundError(f"{context.asset_key.to_user_string()} has no stored output at {path}: materialize it first")
        return pl.read_parquet(path)

    def load_previous(self, asset_key: dg.AssetKey, partition_key: str | None) -> pl.DataFrame | None:
        """The asset's last stored output for a partition, if any (for incremental work)."""
        path = self.path_for(asset_key, partition_key)
        return pl.read_parquet(path) if path.exists() else None

    def delete_stored(self, asset: str, names: StorageNames) -> bool:
        path = self.stored_path(asset, names)
        if path.exists():
            path.unlink()
            return True
        return False
