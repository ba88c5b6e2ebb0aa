"""An answer's text in the run's event log as it is generated, so a client over GraphQL sees it begin early.

The answer op writes the pieces the LLM streams as log messages `answer-delta {"seq": n, "text": "..."}`
(batched: the first piece at once, then at most every `FLUSH_S`); `{"seq": n, "restart": true}` says that
the text so far is void (the call failed after it began; a retry or another model starts over). A client
reading `logsForRun` puts the pieces together in `seq` order (`parse_delta`). Pure: no Dagster import.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

ANSWER_DELTA = "answer-delta "
FLUSH_S = 0.2


@dataclass(frozen=True)
class Delta:
    seq: int
    text: str = ""
    restart: bool = False


class RunLogStream:
    """A `TextStream` (rag_assets.llm.types) writing batched answer deltas through `log` (the op's `context.log.info`)."""

    def __init__(self, log: Callable[[str], None], flush_s: float = FLUSH_S, clock: Callable[[], float] = time.monotonic):
        self.log, self.flush_s, self.clock = log, flush_s, clock
        self.seq, self.buffer, self.last_flush = 0, [], None
        self.started = clock()
        self.first_piece_s: float | None = None  # seconds from this stream's creation to the first piece written

    def _emit(self, record: dict) -> None:
        self.log(ANSWER_DELTA + json.dumps({"seq": self.seq, **record}))
        self.seq += 1

    def flush(self) -> None:
        if self.buffer:
            self._emit({"text": "".join(self.buffer)})
            self.buffer = []
        self.last_flush = self.clock()

    def write(self, text: str) -> None:
        if not text:
            return
        if self.first_piece_s is None:
            self.first_piece_s = self.clock() - self.started
        self.buffer.append(text)
        if self.last_flush is None or self.clock() - self.last_flush >= self.flush_s:
            self.flush()

    def restart(self) -> None:
        self.buffer = []
        self._emit({"restart": True})

    def close(self) -> None:
        self.flush()


def parse_delta(message: str) -> Delta | None:
    """The delta a log message carries, or None for any other message."""
    if not message or not message.startswith(ANSWER_DELTA):
        return None
    try:
        record = json.loads(message[len(ANSWER_DELTA):])
        return Delta(int(record["seq"]), str(record.get("text", "")), bool(record.get("restart", False)))
    except (ValueError, KeyError, TypeError):
        return None
