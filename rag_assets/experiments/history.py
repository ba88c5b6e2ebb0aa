"""Reading an asset partition's materialization history from the Dagster instance."""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.data_version import extract_data_version_from_entry  # no public accessor


def latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str, before_run: str | None = None) -> dict:
    """The plain metadata of the partition's latest materialization (optionally: the latest of another run)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=5).records
    for record in records:
        if before_run and record.run_id == before_run:
            continue
        mat = record.asset_materialization
        return {k: getattr(v, "value", v) for k, v in mat.metadata.items()} if mat else {}
    return {}


def data_versions(instance: dg.DagsterInstance, assets: list[str], partition: str) -> dict[str, str]:
    """Each asset's current data version for the partition ('' if never materialized)."""
    versions = {}
    for asset in assets:
        record = instance.get_latest_data_version_record(dg.AssetKey(asset), partition_key=partition)
        version = extract_data_version_from_entry(record.event_log_entry) if record else None
        versions[asset] = version.value if version else ""
    return versions
