"""Pure logic of source discovery: what to add, remove and (re-)ingest, given specs and a cursor."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rag_assets.sources import SourceSpec, source_fingerprint


@dataclass
class DiscoveryPlan:
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    ingest: dict[str, str] = field(default_factory=dict)  # source -> fingerprint
    cursor: str = "{}"


def plan_discovery(specs: dict[str, SourceSpec], base_dir: Path, existing: list[str], cursor: str | None) -> DiscoveryPlan:
    """Partitions to add and remove, and sources whose spec or files changed since the cursor."""
    seen: dict[str, str] = json.loads(cursor) if cursor else {}
    fingerprints = {name: source_fingerprint(spec, base_dir) for name, spec in specs.items()}
    plan = DiscoveryPlan(
        add=sorted(set(specs) - set(existing)),
        remove=sorted(set(existing) - set(specs)),
        cursor=json.dumps(fingerprints, sort_keys=True),
    )
    plan.ingest = {name: fp for name, fp in sorted(fingerprints.items()) if seen.get(name) != fp}
    return plan
