"""`documents`: every document of one source, with unreadable inputs recorded, not fatal."""


import time

import dagster as dg
import polars as pl

from rag_assets.metadata import frame_table
from rag_assets.ingest.k8s import placement
from rag_assets.ingest.partitions import IngestPartition, ingest_partitions
from rag_assets.ingest.versions import CODE_VERSIONS, frame_version
from rag_assets.sources import load_source
from resources.sources import SourcesResource

ALL_INPUTS_LOADED = "all_inputs_loaded"
FAILURE_COLUMNS = {"locator": "the input, relative to its configured path", "error": "why it could not be read"}


@dg.asset(
    partitions_def=ingest_partitions,
    code_version=CODE_VERSIONS["documents"],
    group_name="ingestion",
    op_tags=placement("cpu"),
    kinds={"python", "parquet"},
    description="Documents of one source (a partition per source in sources.yaml and variant): doc_id, link, title, "
    "text, content hash, updated_at, sensitivity. Inputs that could not be read are rows with `error` set.",
    check_specs=[
        dg.AssetCheckSpec(ALL_INPUTS_LOADED, asset="documents", description="Every input of the source was readable (WARN lists those that were not)."),
    ],
)
def documents(context: dg.AssetExecutionContext, sources: SourcesResource):
    part = IngestPartition.of(context.partition_key)
    spec = sources.spec(part.source)
    started = time.perf_counter()
    result = load_source(spec, sources.base_dir)
    frame = result.to_frame(spec.sensitive)
    failures = frame.filter(pl.col("error").is_not_null()).select("locator", "error")
    loaded = frame.height - failures.height
    for row in failures.iter_rows(named=True):
        context.log.warning(f"skipped {row['locator']}: {row['error']}")
    if loaded == 0 and failures.height:
        # Nothing readable (an unmounted share, a moved folder): refuse rather than empty the index.
        raise dg.Failure(
            description=f"source {spec.name!r}: no input could be read ({failures.height} failed); "
            "refusing to replace its documents with nothing",
            metadata={"failures": frame_table(failures, FAILURE_COLUMNS)},
        )
    yield dg.Output(
        frame,
        data_version=frame_version(frame, ["doc_id", "content_hash", "error"]),
        metadata={
            "source": spec.name,
            "variant": part.variant.name,
            "kind": spec.kind,
            "sensitive": spec.sensitive,
            "documents": loaded,
            "failed": failures.height,
            "failures": frame_table(failures, FAILURE_COLUMNS),
            "characters": int(frame["text"].str.len_chars().sum() or 0),
            "load_seconds": round(time.perf_counter() - started, 3),
        },
    )
    yield dg.AssetCheckResult(
        check_name=ALL_INPUTS_LOADED,
        passed=failures.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"failed": failures.height, "failures": frame_table(failures, FAILURE_COLUMNS)},
    )
