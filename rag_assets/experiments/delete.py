"""`rag experiment delete FILE`: remove an experiment's variants and what only they stored.

What goes: the variants' dynamic partitions and their runs with the materializations they recorded (over
GraphQL), the Parquet
partitions, embedding-cache folders and Milvus collections of ingestion settings that no remaining variant
uses, and the variants' registry entries. What stays: the default variant, its data and its runs (never
deleted), and data a remaining variant shares.
Without `--yes` it only prints the plan.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rag_assets.client import LOCATION, REPOSITORY, Client, ClientError
from rag_assets.settings import default_milvus_uri, rag_home
from rag_assets.storage import CHUNKS_PREFIX, model_slug, stored_partitions
from rag_assets.variants import DEFAULT_VARIANT, VariantSettings, load_registry, unregister

DELETE_PARTITIONS = """
mutation DeletePartitions($selector: RepositorySelector!, $name: String!, $keys: [String!]!) {
  deleteDynamicPartitions(repositorySelector: $selector, partitionsDefName: $name, partitionKeys: $keys) {
    __typename
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}"""
VARIANT_RUNS = """
query VariantRuns($tags: [ExecutionTag!]) { runsOrError(filter: {tags: $tags}) { __typename ... on Runs { results { runId } } } }"""
DELETE_RUN = """
mutation DeleteRun($runId: String!) { deleteRun(runId: $runId) { __typename ... on PythonError { message } } }"""


@dataclass
class DeletionPlan:
    variants: list[str]  # registry entries and `variants` partitions to delete
    ingest_keys: set[str]  # storage used by no remaining variant
    files: list[Path] = field(default_factory=list)
    cache_dirs: list[Path] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"variants: {', '.join(self.variants) or 'none'}"]
        lines += [f"file: {p}" for p in self.files] + [f"cache: {p}" for p in self.cache_dirs]
        lines += [f"collection: {c}" for c in self.collections]
        return "\n".join(lines)


def plan_deletion(variants: list[VariantSettings], registry: dict[str, VariantSettings], assets_root: Path, cache_root: Path,
                  collections: list[str]) -> DeletionPlan:
    """What deleting `variants` removes: never the default variant's storage, never storage a variant left in the
    registry shares."""
    names = [v.name for v in variants if v.name != DEFAULT_VARIANT and v.name in registry]
    kept = {v.ingest_key() for n, v in registry.items() if n not in names}
    keys = {registry[n].ingest_key() for n in names} - kept - {""}
    plan = DeletionPlan(sorted(names), keys)
    for asset in ("documents", "chunks", "embeddings"):
        plan.files += [p for n, p in stored_partitions(assets_root, asset).items() if n.ingest_key in keys]
    plan.cache_dirs = [cache_root / k for k in sorted(keys) if (cache_root / k).is_dir()]
    plan.collections = [c for c in collections if c.startswith(CHUNKS_PREFIX) and any(c.endswith("__" + model_slug(k)) for k in keys)]
    return plan


def delete_experiment(variants: list[VariantSettings], client: Client, yes: bool) -> DeletionPlan:
    """Plan, and with `yes` carry out, the deletion (partitions over GraphQL first, then local storage, then the registry)."""
    from pymilvus import MilvusClient

    milvus = MilvusClient(uri=default_milvus_uri())
    assets_root = Path(os.environ.get("RAG_ASSETS_DIR") or rag_home() / "assets")
    plan = plan_deletion(variants, load_registry(), assets_root, rag_home() / "embedding_cache", milvus.list_collections())
    if not yes:
        return plan
    if plan.variants:
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
        result = client._graphql(DELETE_PARTITIONS, {"selector": selector, "name": "variants", "keys": plan.variants})
        outcome = result["deleteDynamicPartitions"]
        if outcome["__typename"] != "DeleteDynamicPartitionsSuccess":
            raise ClientError(f"deleting the variants' partitions failed ({outcome['__typename']}): {outcome.get('message', '')}")
        for name in plan.variants:  # their runs, with the materializations (evaluations included) they recorded
            runs = client._graphql(VARIANT_RUNS, {"tags": [{"key": "variant", "value": name}]})["runsOrError"]
            for run in runs.get("results", []):
                deleted = client._graphql(DELETE_RUN, {"runId": run["runId"]})["deleteRun"]
                if deleted["__typename"] != "DeletePipelineRunSuccess":
                    raise ClientError(f"deleting run {run['runId']} of variant {name!r} failed ({deleted['__typename']})")
    for name in plan.collections:
        milvus.drop_collection(name)
    for path in plan.files:
        path.unlink(missing_ok=True)
    for folder in plan.cache_dirs:
        shutil.rmtree(folder, ignore_errors=True)
    unregister(plan.variants)
    return plan
