"""The warehouse: a DuckDB file of the platform's own data (sources, documents, chunks, runs, evaluations).

Sensitive sources keep their rows (ids, counts, sizes, dates) but not their content: `text`, `title`
and `heading_path` are NULL and `text_withheld` is true. `rag sql` puts rows into prompts and the
file is readable by anyone with the path, so a sensitive source's words never enter it.

`build_warehouse` is pure: frames and records in, a DuckDB file out (written to a temporary file and
renamed, so readers never see a half-built database). Every table and column carries a `COMMENT`,
which is what the schema index describes to the model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl

from rag_assets.sources import SourceSpec
from rag_assets.storage import stored_partitions


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]

    def ddl(self) -> str:
        return f"CREATE TABLE {self.name} (" + ", ".join(f"{c.name} {c.type}" for c in self.columns) + ")"


def _table(name: str, description: str, *columns: tuple[str, str, str]) -> Table:
    return Table(name, description, tuple(Column(*c) for c in columns))


TABLES: dict[str, Table] = {t.name: t for t in (
    _table("sources", "One row per source declared in sources.yaml (a folder of Markdown, a website, a Slack export...).",
           ("name", "VARCHAR", "unique source name; documents.source and chunks.source refer to it"),
           ("kind", "VARCHAR", "loader kind: markdown, files, html, pdf, github_issues, slack or beir"),
           ("description", "VARCHAR", "free-text description of the source"),
           ("sensitive", "BOOLEAN", "true if the source is sensitive (never sent to external models)"),
           ("schedule", "VARCHAR", "re-ingestion schedule: nightly or manual"),
           ("paths", "VARCHAR", "files or folders of the source, comma separated"),
           ("urls", "VARCHAR", "web pages of the source, comma separated")),
    _table("documents", "One row per ingested document (a file, page, issue or message thread) of a source. "
           "Rows with an error are inputs that could not be read.",
           ("doc_id", "VARCHAR", "stable document id"),
           ("source", "VARCHAR", "name of the source the document belongs to (sources.name)"),
           ("locator", "VARCHAR", "where the document lives inside its source: relative path, URL or issue number"),
           ("link", "VARCHAR", "link to the original document"),
           ("title", "VARCHAR", "document title; NULL when text_withheld"),
           ("text", "VARCHAR", "full text of the document; NULL when text_withheld"),
           ("n_chars", "INTEGER", "length of the document text in characters"),
           ("content_hash", "VARCHAR", "hash of the title and text"),
           ("updated_at", "TIMESTAMP", "when the document was last modified (UTC)"),
           ("sensitive", "BOOLEAN", "true if the document comes from a sensitive source"),
           ("text_withheld", "BOOLEAN", "true if title and text are withheld (NULL) because the source is sensitive"),
           ("error", "VARCHAR", "why the input could not be read; NULL for a loaded document")),
    _table("chunks", "One row per chunk: a piece of a document, at most a few hundred tokens, embedded and indexed for search.",
           ("chunk_id", "VARCHAR", "chunk id (content hash)"),
           ("doc_id", "VARCHAR", "the document the chunk comes from (documents.doc_id)"),
           ("source", "VARCHAR", "name of the source (sources.name)"),
           ("title", "VARCHAR", "title of the chunk's document; NULL when text_withheld"),
           ("heading_path", "VARCHAR", "Markdown headings above the chunk, joined by ' > '; NULL when text_withheld"),
           ("position", "INTEGER", "0-based position of the chunk within its document"),
           ("n_tokens", "INTEGER", "number of embedding-model tokens in the chunk"),
           ("text", "VARCHAR", "text of the chunk; NULL when text_withheld"),
           ("sensitive", "BOOLEAN", "true if the chunk comes from a sensitive source"),
           ("text_withheld", "BOOLEAN", "true if title, heading_path and text are withheld (NULL) because the source is sensitive"),
           ("chunker", "VARCHAR", "chunker settings that produced the chunk")),
    _table("runs", "One row per Dagster run of the platform: ingestion of a source, a question (ask or SQL), a purge.",
           ("run_id", "VARCHAR", "Dagster run id"),
           ("job_name", "VARCHAR", "the Dagster job: ingest, ask_job, sql_job, purge_job; names starting with __ are direct asset materializations"),
           ("status", "VARCHAR", "SUCCESS, FAILURE, CANCELED, STARTED, QUEUED or NOT_STARTED"),
           ("source", "VARCHAR", "the source (partition) the run processed; NULL if none"),
           ("created_at", "TIMESTAMP", "when the run was created (UTC)"),
           ("started_at", "TIMESTAMP", "when the run started (UTC); NULL if it never started"),
           ("ended_at", "TIMESTAMP", "when the run ended (UTC); NULL if still running"),
           ("duration_s", "DOUBLE", "run duration in seconds (ended_at - started_at)")),
    _table("eval_results", "One row per retrieval evaluation (`rag eval`) and retrieval mode: scores on a BEIR dataset.",
           ("dataset", "VARCHAR", "evaluated dataset (folder)"),
           ("split", "VARCHAR", "dataset split, e.g. test"),
           ("mode", "VARCHAR", "retrieval mode: dense, bm25 or hybrid"),
           ("ndcg_at_10", "DOUBLE", "nDCG@10 score between 0 and 1"),
           ("recall_at_100", "DOUBLE", "recall@100 between 0 and 1"),
           ("mrr_at_10", "DOUBLE", "MRR@10 between 0 and 1"),
           ("queries", "INTEGER", "number of evaluated queries"),
           ("documents", "INTEGER", "number of documents in the evaluated corpus"),
           ("evaluated_at", "TIMESTAMP", "when the evaluation ran (UTC)")),
)}


def _naive_utc(value) -> datetime | None:
    """A naive UTC datetime from an epoch, an ISO string or a datetime (None stays None)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc).replace(tzinfo=None)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def _read_all(assets_dir: Path, asset: str) -> pl.DataFrame | None:
    files = [path for names, path in stored_partitions(assets_dir, asset).items() if not names.ingest_key]
    frames = [pl.read_parquet(f) for f in files]
    return pl.concat(frames, how="diagonal_relaxed") if frames else None


def load_asset_frames(assets_dir: Path) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """Every source's `documents` and `chunks` stored under `assets_dir` with the default ingestion settings
    (experiment variants' chunks would count each text once per variant; their figures are in `evaluation`)."""
    return _read_all(assets_dir, "documents"), _read_all(assets_dir, "chunks")


def run_rows(instance, limit: int = 100_000) -> list[dict]:
    """The Dagster instance's run records as plain rows for the `runs` table."""
    rows = []
    for rec in instance.get_run_records(limit=limit):
        run = rec.dagster_run
        started, ended = rec.start_time, rec.end_time
        rows.append({
            "run_id": run.run_id, "job_name": run.job_name, "status": run.status.value,
            "source": run.tags.get("rag/source") or run.tags.get("dagster/partition/source") or run.tags.get("dagster/partition"), "created_at": _naive_utc(rec.create_timestamp),
            "started_at": _naive_utc(started), "ended_at": _naive_utc(ended),
            "duration_s": round(ended - started, 3) if started and ended else None,
        })
    return rows


def read_eval_results(path: Path) -> list[dict]:
    """Rows of `eval_results.jsonl` (one JSON object per evaluated mode); bad lines are skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
            metrics = rec.get("metrics", {})
            rows.append({
                "dataset": rec.get("dataset"), "split": rec.get("split"), "mode": rec.get("mode"),
                "ndcg_at_10": metrics.get("ndcg_at_10"), "recall_at_100": metrics.get("recall_at_100"),
                "mrr_at_10": metrics.get("mrr_at_10"), "queries": rec.get("queries"), "documents": rec.get("documents"),
                "evaluated_at": _naive_utc(rec.get("timestamp")),
            })
        except (ValueError, AttributeError, TypeError):
            continue
    return rows


def source_rows(specs: list[SourceSpec]) -> list[dict]:
    return [{"name": s.name, "kind": s.kind, "description": s.description, "sensitive": s.sensitive, "schedule": s.schedule,
             "paths": ", ".join(s.paths), "urls": ", ".join(s.urls)} for s in specs]


WITHHELD_COLUMNS = ("title", "heading_path", "text")  # a document's own words: never stored for a sensitive source


def withhold_sensitive(frame: pl.DataFrame, sensitive_sources: frozenset[str] = frozenset()) -> pl.DataFrame:
    """NULL the content columns of sensitive rows and say so in `text_withheld` (ids and counts stay).

    A row is sensitive when flagged so, when its flag is missing, or when its source is declared sensitive
    now (a source marked sensitive after its last ingestion)."""
    sensitive = pl.col("sensitive").fill_null(True) if "sensitive" in frame.columns else pl.lit(True)
    if "source" in frame.columns and sensitive_sources:
        sensitive = sensitive | pl.col("source").is_in(sorted(sensitive_sources))
    content = [c for c in WITHHELD_COLUMNS if c in frame.columns]
    return frame.with_columns(
        *[pl.when(sensitive).then(pl.lit(None, dtype=frame.schema[c])).otherwise(pl.col(c)).alias(c) for c in content],
        sensitive.alias("text_withheld"),
    )


def _frame(table: Table, data: pl.DataFrame | list[dict] | None, sensitive_sources: frozenset[str] = frozenset()) -> pl.DataFrame:
    """`data` reduced to the table's columns (missing ones NULL), in order; sensitive content withheld."""
    frame = data if isinstance(data, pl.DataFrame) else pl.DataFrame(data or [], infer_schema_length=None)
    if frame.height == 0:
        return pl.DataFrame()
    if table.name == "documents" and "text" in frame.columns:
        frame = frame.with_columns(pl.col("text").str.len_chars().alias("n_chars"))
    if any(c.name == "text_withheld" for c in table.columns):
        frame = withhold_sensitive(frame, sensitive_sources)
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime) and dtype.time_zone:
            frame = frame.with_columns(pl.col(name).dt.convert_time_zone("UTC").dt.replace_time_zone(None))
    return frame.select([pl.col(c.name) if c.name in frame.columns else pl.lit(None).alias(c.name) for c in table.columns])


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def build_warehouse(target: Path, documents: pl.DataFrame | None, chunks: pl.DataFrame | None, sources: list[SourceSpec],
                    runs: list[dict], evals: list[dict]) -> dict[str, int]:
    """Write the warehouse to `target` atomically; returns the row count of every table."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    data = {"sources": source_rows(sources), "documents": documents, "chunks": chunks, "runs": runs, "eval_results": evals}
    sensitive = frozenset(s.name for s in sources if s.sensitive)
    counts = {}
    con = duckdb.connect(str(tmp))
    try:
        for name, table in TABLES.items():
            con.execute(table.ddl())
            frame = _frame(table, data[name], sensitive)
            if frame.height:
                con.register("incoming", frame.to_arrow())
                con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming")
                con.unregister("incoming")
            con.execute(f"COMMENT ON TABLE {name} IS {_quote(table.description)}")
            for c in table.columns:
                con.execute(f"COMMENT ON COLUMN {name}.{c.name} IS {_quote(c.description)}")
            counts[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, target)
    return counts
