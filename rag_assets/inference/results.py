"""Where inference runs leave their results: one JSON file per run id, so concurrent questions never
overwrite each other (`$RAG_HOME/answers/` for `ask_job`, `$RAG_HOME/sql_answers/` for `sql_job`),
next to the runs' pickled step outputs (`$RAG_HOME/inference/<run_id>/`).

A purge forgets every run whose results carry a removed source's text: `ask_job` runs are tagged with
each source they retrieved from (`source_tag`), and a saved answer names the sources it cites.
"""

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from rag_assets.settings import rag_home

ANSWER_FOLDERS = ("answers", "sql_answers")
STEP_OUTPUTS = "inference"
RETRIEVED_TAG_PREFIX = "rag/retrieved/"


def source_tag(source: str) -> str:
    """The run tag of a run that retrieved text of `source` (value "true"): purge finds its runs by it."""
    return RETRIEVED_TAG_PREFIX + source


def save_result(folder: str, run_id: str, result: dict) -> Path:
    path = rag_home() / folder / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return path


def _cited_sources(result: dict) -> set[str]:
    return {s.get("source", "") for s in result.get("sources") or [] if isinstance(s, dict)}


def _carries(cell: object, texts: Sequence[str], names: set[str]) -> bool:
    """A result cell that is one of `names` (a source name, doc or chunk id) or a piece (16+ chars) of one of `texts`."""
    if not isinstance(cell, str):
        return False
    return cell in names or (len(cell) >= 16 and any(cell in text for text in texts))


def answers_citing(sources: set[str], texts: Sequence[str] = (), names: set[str] = frozenset(), home: Path | None = None) -> list[str]:
    """Run ids of saved answers that cite one of `sources` (ask), or whose result rows carry a value of
    theirs: a name or id in `names`, or a piece of one of `texts` (sql)."""
    home = home or rag_home()
    found = []
    for folder in ANSWER_FOLDERS:
        for path in sorted((home / folder).glob("*.json")):
            try:
                result = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            cells = [c for row in result.get("rows") or [] for c in (row if isinstance(row, list) else [row])]
            if _cited_sources(result) & sources or any(_carries(c, texts, names | sources) for c in cells):
                found.append(path.stem)
    return found


def delete_results(run_ids: Iterable[str], home: Path | None = None) -> int:
    """Delete the saved answers and pickled step outputs of these runs; returns the paths removed."""
    home = home or rag_home()
    removed = 0
    for run_id in run_ids:
        if not run_id or "/" in run_id or run_id.startswith("."):
            continue
        for path in [home / folder / f"{run_id}.json" for folder in ANSWER_FOLDERS]:
            if path.exists():
                path.unlink()
                removed += 1
        outputs = home / STEP_OUTPUTS / run_id
        if outputs.is_dir():
            shutil.rmtree(outputs)
            removed += 1
    return removed
