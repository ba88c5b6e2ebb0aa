"""The sources sensor at --sources sources (default 10,000), and the UI's partition query with that many partitions.

On a real `rag dev` stack (`DevStack`: Milvus Lite server + `dagster dev`, SQLite storage in DAGSTER_HOME), this
process evaluates the real `sources_sensor` against the stack's instance (as the daemon's code server does) with a
sources.yaml of N markdown sources, one tiny file each, and applies its partition requests as the daemon does:

1. the first tick: every source new (N partitions added, N + 1 run requests);
2. a second tick with nothing changed;
3. GraphQL: the query the UI's asset partitions page sends (`PartitionHealthQuery`, from dagster-webserver's
   usePartitionHealthData.tsx), median of --repeat, on `documents` and `index`, before and after N
   materializations of `documents` are recorded (runless events, one per partition);
4. a tick after 100 sources were removed from the file (100 partitions deleted, 100 purge requests).

Each tick is timed in parts: the sensor function (what Dagster's 60 s sensor evaluation timeout bounds), the
serialisation of its run requests (sent back over gRPC within that limit), and applying the partition requests
(the daemon's work after it, done here as the daemon does it: one existence check per key, one delete per
key). The daemon's creation of the N requested runs is not timed. The run requests are not launched: the stack's own sensor reads a sources file that
does not exist and skips, so nothing ingests. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 60.0  # Dagster's default sensor evaluation timeout (DEFAULT_SENSOR_GRPC_TIMEOUT)
PARTITION_HEALTH_QUERY = """
query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name type partitionKeys }
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey primaryDimStartTime primaryDimEndTime
            secondaryDim {
              ... on TimePartitionStatuses { ranges { status startTime endTime startKey endKey } }
              ... on DefaultPartitionStatuses { materializedPartitions materializingPartitions failedPartitions }
            }
          }
        }
      }
    }
  }
}
"""


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_sources(home: Path, names: list[str]) -> Path:
    """sources.yaml declaring `names`, each a markdown source of one tiny file under files/."""
    files = home / "files"
    files.mkdir(exist_ok=True)
    for name in names:
        path = files / f"{name}.md"
        if not path.exists():
            path.write_text(f"# {name}\n\ntext\n", encoding="utf-8")
    sources = home / "sources.yaml"
    sources.write_text(yaml.safe_dump({"sources": [{"name": n, "kind": "markdown", "paths": [f"files/{n}.md"]} for n in names]},
                                      sort_keys=False), encoding="utf-8")
    return sources


def timed_tick(instance, sources_file: Path, cursor: str | None) -> tuple[dict, str | None]:
    """One sensor tick, timed in parts; the partition requests applied as the daemon does."""
    import dagster as dg
    from dagster._serdes import serialize_value

    from resources.sources import SourcesResource
    from sensors.sources_sensor import sources_sensor

    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"sources": SourcesResource(path=str(sources_file))}) as context:
        t = time.perf_counter()
        result = sources_sensor(context)
        evaluate_s = time.perf_counter() - t
    if isinstance(result, dg.SkipReason):
        raise RuntimeError(f"the sensor skipped: {result.skip_message}")
    t = time.perf_counter()
    serialize_value(list(result.run_requests or []))
    serialize_s = time.perf_counter() - t
    t = time.perf_counter()
    added = deleted = 0
    for request in result.dynamic_partitions_requests or []:  # as dagster/_daemon/sensor.py does: one lookup per key
        exists = {key: instance.has_dynamic_partition(request.partitions_def_name, key) for key in request.partition_keys}
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            new = [key for key, found in exists.items() if not found]
            if new:
                instance.add_dynamic_partitions(request.partitions_def_name, new)
            added += len(new)
        else:
            for key in (key for key, found in exists.items() if found):
                instance.delete_dynamic_partition(request.partitions_def_name, key)
                deleted += 1
    apply_s = time.perf_counter() - t
    cursor_after = result.cursor  # the daemon stores the result's cursor
    return {
        "evaluate_s": round(evaluate_s, 2), "serialize_requests_s": round(serialize_s, 2), "apply_partitions_s": round(apply_s, 2),
        "within_limit_s": round(evaluate_s + serialize_s, 2), "limit_s": LIMIT_S, "run_requests": len(result.run_requests or []),
        "partitions_added": added, "partitions_deleted": deleted, "load_avg": load_average(),
    }, cursor_after


def graphql_times(url: str, asset: str, repeat: int) -> dict:
    """The partition page's query on `asset`: the first call and the median of `repeat` more."""
    times, shape = [], {}
    for _ in range(repeat + 1):
        t = time.perf_counter()
        response = httpx.post(f"{url}/graphql", json={"query": PARTITION_HEALTH_QUERY, "variables": {"assetKey": {"path": [asset]}}}, timeout=600)
        times.append(time.perf_counter() - t)
        node = response.json()["data"]["assetNodeOrError"]
        dims = {d["name"]: len(d["partitionKeys"]) for d in node["partitionKeysByDimension"]}
        statuses = node["assetPartitionStatuses"]
        ranges = statuses.get("ranges") or []
        shape = {"partition_keys_by_dimension": dims, "status_ranges": len(ranges), "response_kb": round(len(response.content) / 1024, 1)}
    return {"first_s": round(times[0], 2), "median_s": round(statistics.median(times[1:]), 2), "max_s": round(max(times[1:]), 2),
            "repeat": repeat, **shape, "load_avg": load_average()}


def record_materializations(instance, asset: str, names: list[str]) -> float:
    """A runless materialization of `asset` for each source's default partition (what an ingested source leaves)."""
    import dagster as dg

    from rag_assets.ingest.partitions import partition_key

    t = time.perf_counter()
    for name in names:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=str(partition_key(name))))
    return round(time.perf_counter() - t, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--remove", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5, help="GraphQL queries per asset after the first")
    parser.add_argument("--no-materializations", action="store_true", help="skip recording N materializations")
    args = parser.parse_args()

    import dagster as dg

    from rag_assets.devserver import DevStack, free_port

    home = Path(tempfile.mkdtemp(prefix="scale_sensor_"))
    names = [f"src{i:05d}" for i in range(args.sources)]
    sources_file = write_sources(home, names)
    # The stack's own sensor reads a file that does not exist, and skips: the runs requested here are not launched.
    dev = DevStack(home / "stack", free_port(), free_port(), home / "stack" / "absent.yaml", REPO / "workspace.yaml", log_dir=home / "logs")
    out: dict = {"machine": machine(), "sources": args.sources, "load_avg_start": load_average()}
    try:
        t = time.perf_counter()
        dev.start(timeout_s=300)
        out["stack_start_s"] = round(time.perf_counter() - t, 1)
        os.environ["DAGSTER_HOME"] = str(dev.dagster_home)
        with dg.DagsterInstance.get() as instance:
            out["first_tick"], cursor = timed_tick(instance, sources_file, None)
            out["unchanged_tick"], cursor = timed_tick(instance, sources_file, cursor)
            out["graphql"] = {asset: graphql_times(dev.url, asset, args.repeat) for asset in ("documents", "index")}
            if not args.no_materializations:
                out["record_materializations_s"] = record_materializations(instance, "documents", names)
                out["graphql_documents_all_materialized"] = graphql_times(dev.url, "documents", args.repeat)
            write_sources(home, names[args.remove:])
            out[f"remove_{args.remove}_tick"], cursor = timed_tick(instance, sources_file, cursor)
        out["load_avg_end"] = load_average()
        print(json.dumps(out))
    finally:
        dev.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
