"""The sources registry resource: reads `sources.yaml`."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from rag_assets.sources import SourceSpec, sources_file_path
from rag_assets.sources.spec import SourcesFile, read_sources_file


class SourcesResource(dg.ConfigurableResource):
    """Where the source specs live; `path` defaults to `$RAG_SOURCES` or `./sources.yaml`."""

    path: str = ""

    @property
    def file(self) -> Path:
        return Path(self.path).resolve() if self.path else sources_file_path()

    @property
    def base_dir(self) -> Path:
        return self.file.parent

    def read(self) -> SourcesFile:
        """The whole file, confirmations included; `SourcesFileError` if it is missing, unreadable or invalid."""
        return read_sources_file(self.file)

    def specs(self) -> dict[str, SourceSpec]:
        return self.read().specs()

    def spec(self, name: str) -> SourceSpec:
        specs = self.specs()
        if name not in specs:
            raise KeyError(f"source {name!r} is not declared in {self.file} (declared: {sorted(specs)})")
        return specs[name]
