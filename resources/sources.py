"""The sources registry resource: reads `sources.yaml`."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from rag_assets.sources import SourceSpec, load_sources, sources_file_path


class SourcesResource(dg.ConfigurableResource):
    """Where the source specs live; `path` defaults to `$RAG_SOURCES` or `./sources.yaml`."""

    path: str = ""

    @property
    def file(self) -> Path:
        return Path(self.path).resolve() if self.path else sources_file_path()

    @property
    def base_dir(self) -> Path:
        return self.file.parent

    def specs(self) -> dict[str, SourceSpec]:
        return load_sources(self.file)

    def spec(self, name: str) -> SourceSpec:
        specs = self.specs()
        if name not in specs:
            raise KeyError(f"source {name!r} is not declared in {self.file} (declared: {sorted(specs)})")
        return specs[name]
