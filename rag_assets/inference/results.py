"""Where inference runs leave their results: one JSON file per run id, so concurrent questions never
overwrite each other (`$RAG_HOME/answers/` for `ask_job`, `$RAG_HOME/sql_answers/` for `sql_job`)."""

import json
from pathlib import Path

from rag_assets.settings import rag_home


def save_result(folder: str, run_id: str, result: dict) -> Path:
    path = rag_home() / folder / f"{run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return path
