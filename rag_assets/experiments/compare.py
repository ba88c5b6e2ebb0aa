"""Compare the variants of an experiment: one row per (source, variant) from its `evaluation` materializations.

`fetch_rows` reads them over GraphQL (the CLI), `fetch_rows_from_instance` from a `DagsterInstance` (the
`experiment_report` asset); the rest are pure functions of the rows: the best variant per source by nDCG@10
(ties: the lower p50 latency), and the same table as Markdown, Dagster table metadata, or JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dagster as dg

from rag_assets.client import Client, ClientError
from rag_assets.variants import DEFAULT_SETTINGS

EVALUATION_ASSET = "evaluation"
EXPERIMENT_TAG, VARIANT_TAG = "experiment", "variant"
METRICS = ("ndcg@10", "recall@100", "mrr@10", "latency_p50_ms", "embed_seconds", "llm_cost_usd")
ROW_FIELDS = ("variant", "source", *METRICS, "collection", "variant_settings", "data_versions", "run_id")

# name, type, description, Markdown header, format: the columns of the table, in order
COLUMNS = (
    ("source", "string", "The source evaluated (its labeled questions).", "source", "{}"),
    ("variant", "string", "The variant: a named set of pipeline settings.", "variant", "{}"),
    ("best", "bool", "Highest nDCG@10 on this source (ties: lower p50 latency).", "", ""),
    ("ndcg@10", "float", "nDCG@10 of the retrieval on the labeled questions (higher is better).", "nDCG@10", "{:.4f}"),
    ("recall@100", "float", "Share of the relevant documents in the top 100.", "R@100", "{:.4f}"),
    ("mrr@10", "float", "Mean reciprocal rank of the first relevant document in the top 10.", "MRR@10", "{:.4f}"),
    ("latency_p50_ms", "float", "Median retrieval latency per question, milliseconds.", "p50 ms", "{:.1f}"),
    ("embed_seconds", "float", "Seconds spent embedding the source's chunks for this variant.", "embed s", "{:.1f}"),
    ("llm_cost_usd", "float", "LLM cost of the evaluation, US dollars (0 for local models).", "LLM $", "{:.4f}"),
    ("settings", "string", "The variant's settings that differ from the defaults.", "settings", "{}"),
    ("collection", "string", "The Milvus collection the variant's chunks are in.", "collection", "{}"),
    ("run_id", "string", "The run that materialized the evaluation.", "run", "{}"),
)

RUNS = """
query ExperimentRuns($filter: RunsFilter, $cursor: String, $limit: Int) {
  runsOrError(filter: $filter, cursor: $cursor, limit: $limit) {
    __typename
    ... on Runs {
      results {
        runId
        tags { key value }
        assetMaterializations {
          assetKey { path }
          partition
          timestamp
          metadataEntries {
            label
            __typename
            ... on FloatMetadataEntry { floatValue floatRepr }
            ... on IntMetadataEntry { intValue intRepr }
            ... on TextMetadataEntry { text }
            ... on JsonMetadataEntry { jsonString }
            ... on BoolMetadataEntry { boolValue }
          }
        }
      }
    }
    ... on InvalidPipelineRunsFilterError { message }
    ... on PythonError { message }
  }
}"""
PAGE = 100


# --- rows -------------------------------------------------------------------------------------------------------

def _json(value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def make_row(metadata: Mapping[str, object], run_id: str, partition: str | None = None, tags: Mapping[str, str] | None = None) -> dict:
    """A row from an `evaluation` materialization's metadata (label -> plain value). Source and variant come from
    the metadata, else from the partition key `<source>|<variant>`, else from the run's `variant` tag."""
    source, _, variant = (partition or "").partition("|")
    row = {
        "variant": metadata.get("variant") or variant or (tags or {}).get(VARIANT_TAG, ""),
        "source": metadata.get("source") or source,
        **{metric: _number(metadata.get(metric)) for metric in METRICS},
        "collection": metadata.get("collection") or "",
        "variant_settings": _json(metadata.get("variant_settings")) or {},
        "data_versions": _json(metadata.get("data_versions")) or {},
        "run_id": run_id,
    }
    return row


def latest_rows(found: Iterable[tuple[float, dict]]) -> list[dict]:
    """The latest row per (source, variant), given (timestamp, row) pairs; sorted by source, then variant."""
    latest: dict[tuple[str, str], tuple[float, dict]] = {}
    for timestamp, row in found:
        key = (row["source"], row["variant"])
        if key not in latest or timestamp > latest[key][0]:
            latest[key] = (timestamp, row)
    return [row for _, row in sorted(latest.values(), key=lambda item: (item[1]["source"], item[1]["variant"]))]


def _entry_value(entry: dict) -> object:
    kind = entry["__typename"]
    if kind == "FloatMetadataEntry":
        return entry["floatValue"] if entry.get("floatValue") is not None else float(entry["floatRepr"])
    if kind == "IntMetadataEntry":
        return entry["intValue"] if entry.get("intValue") is not None else int(entry["intRepr"])
    if kind == "JsonMetadataEntry":
        return json.loads(entry["jsonString"])
    return entry.get("text", entry.get("boolValue"))


def fetch_rows(client: Client, experiment: str) -> list[dict]:
    """The latest `evaluation` of each (source, variant) among the runs tagged `experiment=<experiment>`, over GraphQL."""
    found, cursor = [], None
    while True:
        variables = {"filter": {"tags": [{"key": EXPERIMENT_TAG, "value": experiment}]}, "cursor": cursor, "limit": PAGE}
        runs = client._graphql(RUNS, variables)["runsOrError"]
        if runs["__typename"] != "Runs":
            raise ClientError(f"listing the runs of experiment {experiment!r} failed ({runs['__typename']}): {runs.get('message', '')}")
        for run in runs["results"]:
            tags = {t["key"]: t["value"] for t in run["tags"]}
            for event in run["assetMaterializations"]:
                if event["assetKey"]["path"] != [EVALUATION_ASSET]:
                    continue
                metadata = {e["label"]: _entry_value(e) for e in event["metadataEntries"]}
                found.append((float(event["timestamp"]) / 1000, make_row(metadata, run["runId"], event.get("partition"), tags)))
        if len(runs["results"]) < PAGE:
            return latest_rows(found)
        cursor = runs["results"][-1]["runId"]


def fetch_rows_from_instance(instance: dg.DagsterInstance, experiment: str) -> list[dict]:
    """The same rows read from a Dagster instance (in the `experiment_report` asset: `context.instance`)."""
    found = []
    for run in instance.get_runs(filters=dg.RunsFilter(tags={EXPERIMENT_TAG: experiment})):
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            materialization = entry.asset_materialization
            if materialization is None or materialization.asset_key != dg.AssetKey(EVALUATION_ASSET):
                continue
            metadata = {label: value.value for label, value in materialization.metadata.items()}
            found.append((entry.timestamp, make_row(metadata, run.run_id, materialization.partition, run.tags)))
    return latest_rows(found)


# --- the comparison ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    experiment: str
    rows: list[dict]  # sorted by source, then nDCG@10 descending
    best: dict[str, str]  # source -> its best variant

    def is_best(self, row: dict) -> bool:
        return self.best.get(row["source"]) == row["variant"]


def _rank(row: dict) -> tuple[float, float]:
    """Sort key, best first: higher nDCG@10, then lower p50 latency (missing values last)."""
    ndcg, latency = row.get("ndcg@10"), row.get("latency_p50_ms")
    return (-ndcg if ndcg is not None else float("inf"), latency if latency is not None else float("inf"))


def comparison(rows: list[dict], experiment: str = "") -> Comparison:
    """Order the rows per source, best first, and name each source's best variant (rows without nDCG@10 never win)."""
    ordered = sorted(rows, key=lambda row: (row["source"], *_rank(row), row["variant"]))
    best: dict[str, str] = {}
    for row in ordered:
        if row["source"] not in best and row.get("ndcg@10") is not None:
            best[row["source"]] = row["variant"]
    return Comparison(experiment, ordered, best)


def changed_settings(row: dict) -> str:
    """`chunk_max_tokens=128, chunk_overlap=16`: the row's settings that differ from the defaults."""
    defaults = DEFAULT_SETTINGS.settings()
    settings = row.get("variant_settings") or {}
    changed = [f"{k}={v}" for k, v in sorted(settings.items()) if k in defaults and defaults[k] != v]
    return ", ".join(changed) or "defaults"


def _values(c: Comparison, row: dict) -> dict:
    return {**row, "best": c.is_best(row), "settings": changed_settings(row)}


def _cell(value: object, fmt: str) -> str:
    return "–" if value is None or value == "" else fmt.format(value)


def best_line(c: Comparison) -> str:
    if not c.best:
        return "No variant has an nDCG@10 yet."
    by_source = {row["source"]: row for row in c.rows if c.is_best(row)}
    parts = [f"{row['variant']} on {source} (nDCG@10 {row['ndcg@10']:.4f})" for source, row in by_source.items()]
    return "Best variant by nDCG@10 (ties: lower p50 latency): " + "; ".join(parts) + "."


def to_markdown(c: Comparison) -> str:
    """A Markdown table, one row per (source, variant), best first per source, and a line naming the best."""
    if not c.rows:
        return f"No evaluation yet for experiment {c.experiment!r}.\n"
    columns = [col for col in COLUMNS if col[0] not in ("best", "collection", "run_id")]
    lines = ["| " + " | ".join(col[3] for col in columns) + " |",
             "|" + "|".join("---" if col[1] == "string" else "---:" for col in columns) + "|"]
    for row in c.rows:
        values = _values(c, row)
        cells = [_cell(values[name], fmt) for name, _, _, _, fmt in columns]
        if values["best"]:
            cells[1] = f"**{cells[1]}** (best)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{best_line(c)}\n"


def to_table_metadata(c: Comparison) -> dg.TableMetadataValue:
    """The table as Dagster metadata (shown in the UI), each column documented."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, type_, description) for name, type_, description, _, _ in COLUMNS])
    records = [dg.TableRecord({name: _values(c, row)[name] for name, *_ in COLUMNS}) for row in c.rows]
    return dg.MetadataValue.table(records, schema=schema)


def to_dict(c: Comparison) -> dict:
    return {"experiment": c.experiment, "best": c.best,
            "rows": [{**{k: row.get(k) for k in ROW_FIELDS}, "best": c.is_best(row)} for row in c.rows]}


def to_json(c: Comparison) -> str:
    return json.dumps(to_dict(c))
