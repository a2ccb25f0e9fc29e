"""Writes the event stream of one step attempt: one JSON object per line.

The file is the durable channel on the local backend (the server tails it, and it survives
a server restart); stdout is the channel on Kubernetes (the pod log). Each event carries
`n`, a counter local to this attempt; the server turns it into the job-wide `seq` and uses
`n` to drop what it already stored when it resumes.
"""

from __future__ import annotations

import json
import threading
import time
from typing import IO, Any

from ..contract import EVENT_VERSION

# Prefix that marks our lines in a mixed stream (the pod log also carries stray prints).
LINE_PREFIX = "@@jupyter-ext@@ "


class Emitter:
    """Appends events to a file and/or a stream, flushing each line so readers see it at once."""

    def __init__(
        self,
        job: str,
        step: str,
        attempt: int,
        *,
        path: str | None = None,
        stream: IO[str] | None = None,
    ) -> None:
        self.job = job
        self.step = step
        self.attempt = attempt
        self._n = 0
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 - closed in close()
        self._stream = stream
        self.last_cell_error: dict[str, Any] | None = None
        if self._file is not None:
            # Resume numbering after a previous runner process of the same attempt (never happens
            # on purpose, but a duplicate n would make the server drop real events).
            try:
                with open(path, encoding="utf-8") as existing:  # type: ignore[arg-type]
                    self._n = sum(1 for _ in existing)
            except OSError:
                self._n = 0

    @property
    def count(self) -> int:
        """How many events this attempt has written so far (the last `n`)."""
        return self._n

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Write one event and return it."""
        with self._lock:
            self._n += 1
            event = {
                "v": EVENT_VERSION,
                "job": self.job,
                "step": self.step,
                "attempt": self.attempt,
                "n": self._n,
                "ts": time.time(),
                "type": type_,
                **fields,
            }
            if type_ == "cell.end" and fields.get("status") == "error":
                self.last_cell_error = {"cell_index": fields.get("cell_index"), "cell_id": fields.get("cell_id")}
            line = json.dumps(event, default=str, separators=(",", ":"))
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()
            if self._stream is not None:
                self._stream.write(LINE_PREFIX + line + "\n")
                self._stream.flush()
            return event

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def parse_line(line: str) -> dict[str, Any] | None:
    """Parse one line of a runner stream; None for anything that is not one of our events."""
    text = line.strip()
    if text.startswith(LINE_PREFIX):
        text = text[len(LINE_PREFIX) :]
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if not isinstance(event, dict) or "type" not in event or "n" not in event:
        return None
    return event
