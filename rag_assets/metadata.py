"""Frames as Dagster table metadata (`MetadataValue.table` with a column schema): the UI renders and documents them."""

from __future__ import annotations

import dagster as dg
import polars as pl

MAX_CELL_CHARS = 200


def _column_type(dtype: pl.DataType) -> str:
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype == pl.Boolean:
        return "bool"
    return "string"


def _cell(value):
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)[:MAX_CELL_CHARS]


def frame_table(frame: pl.DataFrame, descriptions: dict[str, str] | None = None, max_rows: int = 50) -> dg.MetadataValue:
    """The first `max_rows` rows of `frame` as a table, each column typed and, where given, described."""
    descriptions = descriptions or {}
    schema = dg.TableSchema(columns=[dg.TableColumn(name, _column_type(dtype), description=descriptions.get(name))
                                     for name, dtype in frame.schema.items()])
    records = [dg.TableRecord({k: _cell(v) for k, v in row.items()}) for row in frame.head(max_rows).iter_rows(named=True)]
    return dg.MetadataValue.table(records=records, schema=schema)
