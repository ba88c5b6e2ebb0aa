"""Pure logic of source discovery: what to add, remove and (re-)ingest, given the sources file and a cursor."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rag_assets.sources import SourceSpec, source_fingerprint

FINAL = ("FAILURE", "CANCELED")


@dataclass
class Cursor:
    """What the sensor remembers between ticks (stored as JSON in the sensor's cursor).

    fingerprints: the fingerprint each declared source was last requested with.
    generations: how many times a source came back after its partition was removed; part of the run key, so
        that a re-added source is ingested again (Dagster launches a run key only once). Removed sources keep
        their entry, with 0 if they never came back.
    retried: the fingerprint a missed run was re-requested for, so that a source whose runs keep failing is
        relaunched once per fingerprint, not every tick.
    runs_checked: the time up to which ingest runs were checked for misses (None: never).
    """

    fingerprints: dict[str, str] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)
    retried: dict[str, str] = field(default_factory=dict)
    runs_checked: float | None = None

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        """Reads this format and the first one (a JSON object source -> fingerprint)."""
        data = json.loads(raw) if raw else {}
        if data.get("version") != 2:
            return cls(fingerprints=dict(data))
        return cls(data["fingerprints"], data.get("generations", {}), data.get("retried", {}), data.get("runs_checked"))

    def dump(self) -> str:
        return json.dumps({
            "version": 2, "fingerprints": self.fingerprints, "generations": self.generations,
            "retried": self.retried, "runs_checked": self.runs_checked,
        }, sort_keys=True)


def run_key(name: str, generation: int, fingerprint: str) -> str:
    """The ingest run key: the same as before generations existed for a source that never came back."""
    return f"{name}:{fingerprint}" if generation == 0 else f"{name}:{generation}:{fingerprint}"


@dataclass
class DiscoveryPlan:
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    ingest: dict[str, str] = field(default_factory=dict)  # source -> run key
    returning: list[str] = field(default_factory=list)  # re-added sources not ingested since their removal
    declared: set[str] = field(default_factory=set)
    cursor: Cursor = field(default_factory=Cursor)

    def defer(self, names: set[str]) -> None:
        """Leave these sources for a later tick (their purge is still running): no run, no fingerprint noted."""
        for name in names:
            self.ingest.pop(name, None)
            self.cursor.fingerprints.pop(name, None)


def removal_problem(file: Path, declared: set[str], existing: set[str], confirmed: set[str]) -> str | None:
    """Why this tick must not remove partitions, or None.

    An empty file, or one that drops more than half of the existing sources (all of them included), is taken
    for a mistake unless every source it drops is listed under `confirm_removal`.
    """
    removed = existing - declared
    if not declared and not existing:
        return f"{file} declares no sources: nothing to do"
    if len(removed) * 2 <= len(existing):
        return None
    unconfirmed = sorted(removed - confirmed)
    if not unconfirmed:
        return None
    what = "declares no sources" if not declared else f"no longer declares {len(removed)} of the {len(existing)} sources"
    listed = ", ".join(unconfirmed)
    return (
        f"{file} {what} (missing without confirmation: {listed}); nothing was removed: removing more than half of the sources at once "
        f"needs confirmation. If intended, add `confirm_removal: [{listed}]` to {file.name} (what `rag sources remove "
        f"NAME...` writes when it removes declared sources); otherwise restore them."
    )


def plan_discovery(specs: dict[str, SourceSpec], base_dir: Path, existing: list[str], cursor: Cursor,
                   busy: set[str] | frozenset[str] = frozenset()) -> DiscoveryPlan:
    """Partitions to add and remove, and the sources to ingest: new, re-added, or whose spec or files changed.

    `busy`: removed sources with an unfinished ingest run; they are removed on a later tick, after the run, so that
    the run cannot write into the index after their purge.
    """
    fingerprints = {name: source_fingerprint(spec, base_dir) for name, spec in sorted(specs.items())}
    add = sorted(set(specs) - set(existing))
    remove = sorted(set(existing) - set(specs) - set(busy))
    generations = dict(cursor.generations)
    for name in add:  # known before: its partition was removed (by this sensor or by hand) and it came back
        if name in cursor.fingerprints or name in generations:
            generations[name] = generations.get(name, 0) + 1
    for name in remove:
        generations.setdefault(name, 0)
    ingest = {
        name: run_key(name, generations.get(name, 0), fp)
        for name, fp in fingerprints.items()
        if cursor.fingerprints.get(name) != fp or name in add
    }
    retried = {name: fp for name, fp in cursor.retried.items() if name in specs and name not in add}
    returning = sorted(name for name in ingest if name in generations and name not in cursor.fingerprints)
    kept = {name: cursor.fingerprints[name] for name in busy if name in cursor.fingerprints and name not in specs}
    new_cursor = Cursor({**fingerprints, **kept}, generations, retried, cursor.runs_checked)
    return DiscoveryPlan(add=add, remove=remove, ingest=ingest, returning=returning, declared=set(specs), cursor=new_cursor)


@dataclass(frozen=True)
class RunSummary:
    """The facts about one ingest run that decide whether it was missed."""

    source: str
    status: str  # DagsterRunStatus value
    created: float
    tags: dict[str, str]


def will_be_retried(run: RunSummary, retries_enabled: bool, default_max_retries: int) -> bool:
    """Whether Dagster's run retries (the daemon) will, or did, launch another run for this finished run."""
    if run.status != "FAILURE" or not retries_enabled:
        return False
    verdict = run.tags.get("dagster/will_retry")  # set by Dagster when the run failed
    if verdict is not None:
        return verdict.lower() == "true"
    try:
        return int(run.tags.get("dagster/retry_number", 0)) < int(run.tags.get("dagster/max_retries", default_max_retries))
    except ValueError:  # Dagster does not retry a run whose max_retries tag is not a number
        return False


def missed_sources(runs: list[RunSummary], plan: DiscoveryPlan, retries_enabled: bool, default_max_retries: int) -> dict[str, str]:
    """Sources whose latest ingest run ended FAILURE or CANCELED for good -> the run key to request them again.

    Once per fingerprint: the fingerprint is noted in `plan.cursor.retried`, so a source whose runs keep failing
    is relaunched again only after its spec or files change.
    """
    latest: dict[str, RunSummary] = {}
    for run in runs:
        if run.source not in latest or run.created > latest[run.source].created:
            latest[run.source] = run
    cursor, out = plan.cursor, {}
    for name, run in sorted(latest.items()):
        fp = cursor.fingerprints.get(name)
        if name not in plan.declared or fp is None or name in plan.ingest or run.status not in FINAL or cursor.retried.get(name) == fp:
            continue
        if will_be_retried(run, retries_enabled, default_max_retries):
            continue
        out[name] = run_key(name, cursor.generations.get(name, 0), fp) + ":missed"
        cursor.retried[name] = fp
    return out
