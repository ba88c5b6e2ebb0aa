"""Small helpers that format materialization metadata for the Dagster UI."""

from __future__ import annotations

import dagster as dg
import polars as pl


def markdown_table(frame: pl.DataFrame, max_rows: int = 50, max_chars: int = 120) -> dg.MetadataValue:
    """A Markdown table of the first rows of a frame (cells clipped), for the UI."""
    if frame.height == 0:
        return dg.MetadataValue.md("_none_")
    cols = frame.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.head(max_rows).iter_rows():
        cells = [str(v).replace("|", "\\|").replace("\n", " ")[:max_chars] for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    if frame.height > max_rows:
        lines.append(f"\n_{frame.height - max_rows} more rows_")
    return dg.MetadataValue.md("\n".join(lines))
