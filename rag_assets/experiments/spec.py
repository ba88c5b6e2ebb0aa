"""Experiment files: a named set of variants to build and evaluate on some sources (`rag experiment run FILE`)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rag_assets.sources.spec import SOURCE_NAME_PATTERN, error_location, yaml_problem
from rag_assets.variants import DEFAULT_SETTINGS, DEFAULT_VARIANT, VariantSettings

EXPERIMENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class ExperimentError(ValueError):
    """An experiment file that cannot be used (missing, not YAML, invalid); the message is one line."""


class ExperimentFile(BaseModel):
    """What an experiment runs: every variant on every source, each scored on the labeled set."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=EXPERIMENT_NAME_PATTERN, description="Tags every run of the experiment (`experiment=<name>`).")
    description: str = ""
    sources: list[str] = Field(min_length=1, description="Declared source names (sources.yaml).")
    labels: str | None = Field(default=None, description="A BEIR-format labeled set (queries.jsonl, qrels/<split>.tsv), "
                               "relative to the experiment file; absolute once loaded.")
    split: str = Field(default="test", pattern=r"^[A-Za-z0-9_.-]+$")
    variants: list[VariantSettings] = Field(min_length=1)
    concurrency: int = Field(default=4, ge=1, le=32, description="Variants built at the same time.")

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: list[str]) -> list[str]:
        for source in sources:
            if not re.match(SOURCE_NAME_PATTERN, source):
                raise ValueError(f"not a source name: {source!r}")
        if len(set(sources)) != len(sources):
            raise ValueError("a source is listed twice")
        return sources

    @model_validator(mode="after")
    def _variants_consistent(self) -> "ExperimentFile":
        names = [v.name for v in self.variants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"variant {', '.join(map(repr, twice))} is named twice: give each variant its own name")
        for variant in self.variants:
            if variant.name == DEFAULT_VARIANT and variant.settings() != DEFAULT_SETTINGS.settings():
                changed = sorted(k for k, v in variant.settings().items() if DEFAULT_SETTINGS.settings()[k] != v)
                raise ValueError(f"variant 'default' is today's settings and cannot change them ({', '.join(changed)}): "
                                 "give these settings another name")
        return self


def parse_experiment(text: str, path: Path) -> ExperimentFile:
    """Validate the text of an experiment file; `ExperimentError` with one line naming `path` and the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path}: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: expected a mapping with name, sources and variants, found {type(data).__name__}")
    try:
        return ExperimentFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = first["msg"].removeprefix("Value error, ")
        where = error_location(tuple(first["loc"]), data)
        raise ExperimentError(" ".join(f"{path}: {where + ': ' if where else ''}{msg}{more}".split())) from None


def load_experiment(path: Path) -> ExperimentFile:
    """Read and validate an experiment file; `labels` comes back absolute and checked to hold a labeled set."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such experiment file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExperimentError(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    exp = parse_experiment(text, path)
    if exp.labels is None:
        return exp
    labels = (path.parent / exp.labels).resolve()
    for needed in (labels / "queries.jsonl", labels / "qrels" / f"{exp.split}.tsv"):
        if not needed.is_file():
            raise ExperimentError(f"{path}: labels: no {needed} (labels names a folder with queries.jsonl and "
                                  f"qrels/{exp.split}.tsv, relative to the experiment file)")
    return exp.model_copy(update={"labels": str(labels)})
