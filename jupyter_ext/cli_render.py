"""How the CLI shows jobs and events in a terminal: outputs as they come, a line per cell, tables."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Renderer:
    """Prints events as a person wants to read them: outputs as they come, a line per cell."""

    def __init__(self, out: TextIO = sys.stdout, err: TextIO = sys.stderr, color: bool | None = None) -> None:
        self.out, self.err = out, err
        self.color = out.isatty() if color is None else color
        self.multi_step = False
        self.step_cells: dict[str, list[int]] = {}
        self.started = time.time()
        self.runs = 0  # a sweep's runs (0: not a sweep)
        self.runs_ended = 0

    def _c(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def _plain(self, text: str) -> str:
        return text if self.color else ANSI.sub("", text)

    def job(self, job: dict[str, Any]) -> None:
        sweep = job.get("sweep")
        if sweep is not None:
            self.runs = len(sweep["children"])  # runs_ended counts the `sweep.child` ends that follow
            over = ", ".join(sweep["parameters"])
            self.err.write(
                self._c(
                    f"sweep {job['id']} ({job['name']}) on {job['backend']}: {self.runs} runs ({sweep['mode']} over "
                    f"{over}), {sweep['parallel']} at once\n",
                    "2",
                )
            )
            return
        self.multi_step = len(job.get("steps", [])) > 1
        for step in job.get("steps", []):
            self.step_cells[step["name"]] = list(step.get("cells", []))
        steps = ", ".join(s["name"] for s in job.get("steps", []))
        self.err.write(self._c(f"job {job['id']} ({job['name']}) on {job['backend']}: steps {steps}\n", "2"))

    def event(self, e: dict[str, Any]) -> None:
        kind, step = e["type"], e.get("step") or "main"
        prefix = f"[{step}] " if self.multi_step else ""
        if kind == "cell.start" and e.get("cell_index") is not None:
            own = self.step_cells.get(step, [])
            where = f"{own.index(e['cell_index']) + 1}/{len(own)}" if e["cell_index"] in own else "setup"
            self.err.write(self._c(f"{prefix}── cell {e['cell_index'] + 1} ({where}) ──\n", "2"))
        elif kind == "cell.output":
            self._output(e, prefix)
        elif kind == "log":
            self.err.write(prefix + self._plain(e.get("text", "")))
        elif kind == "step.start" and self.multi_step:
            self.err.write(self._c(f"{prefix}started (attempt {e.get('attempt', 1)})\n", "36"))
        elif kind == "step.cached":
            source = e.get("from") or {}
            self.err.write(self._c(f"{prefix}cached from job {source.get('job')}\n", "36"))
        elif kind == "step.retry":
            msg = (e.get("error") or {}).get("message", "failed")
            self.err.write(self._c(f"{prefix}attempt {e.get('attempt')} failed ({msg}); retrying\n", "33"))
        elif kind == "step.end" and self.multi_step:
            colour = "32" if e.get("status") == "succeeded" else "31"
            self.err.write(self._c(f"{prefix}{e.get('status')}\n", colour))
        elif kind == "sweep.child" and e.get("status") not in ("queued", "running"):
            self.runs_ended += 1
            shown = " ".join(f"{k}={value_words(v)}" for k, v in (e.get("parameters") or {}).items())
            metrics = "  ".join(f"{k}={metric_words(v)}" for k, v in (e.get("metrics") or {}).items())
            colour = "32" if e.get("status") == "succeeded" else "31"
            line = f"[{self.runs_ended}/{self.runs or '?'}] {shown}: {e.get('status')}"
            if e.get("status") != "succeeded" and (e.get("error") or {}).get("message"):
                line += f" ({e['error']['message']})"
            line += (f"  {metrics}" if metrics else "") + f"  (job {e.get('child')})\n"
            self.err.write(self._c(line, colour))
        elif kind == "job.end":
            self._end(e)
        self.out.flush()
        self.err.flush()

    def _output(self, e: dict[str, Any], prefix: str) -> None:
        output = e.get("output") or {}
        otype = output.get("output_type")
        if otype == "stream":
            target = self.err if output.get("name") == "stderr" else self.out
            # parallel steps interleave: say whose line each is
            target.write(_prefixed(self._plain(_text(output.get("text"))), prefix))
        elif otype == "error":
            self.out.write(_prefixed(self._plain("\n".join(output.get("traceback", []))) + "\n", prefix))
        else:
            data = output.get("data", {})
            if e.get("artifact"):
                self.out.write(self._c(f"{prefix}[image: {e['artifact']}]\n", "35"))
            elif "text/plain" in data and not e.get("update"):
                self.out.write(_prefixed(_text(data["text/plain"]) + "\n", prefix))
            elif "text/html" in data:
                self.out.write(self._c(f"{prefix}[html output: see the executed notebook artifact]\n", "35"))

    def _end(self, e: dict[str, Any]) -> None:
        status = e.get("status")
        error = e.get("error") or {}
        what = "sweep" if self.runs else "job"
        if status == "succeeded":
            self.err.write(self._c(f"{what} {e['job']} succeeded\n", "32"))
        else:
            where = f" in step {error['step']!r}" if error.get("step") and self.multi_step else ""
            message = error.get("message", status)
            self.err.write(self._c(f"{what} {e['job']} {status}{where}: {message}\n", "31"))


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _prefixed(text: str, prefix: str) -> str:
    """Every line of `text` led by `prefix` ('[step] ' in a job of several steps)."""
    return "".join(prefix + line for line in text.splitlines(keepends=True)) if prefix else text


def status_words(job_or_step: dict[str, Any]) -> str:
    """'queued (3rd in line)' while waiting for a slot, else the status."""
    place = job_or_step.get("queue_position")
    if job_or_step["status"] != "queued" or not place:
        return str(job_or_step["status"])
    suffix = "th" if 10 <= place % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(place % 10, "th")
    return f"queued ({place}{suffix} in line)"


def duration(job: dict[str, Any]) -> str:
    from datetime import datetime, timezone

    if not job.get("started"):
        return "-"
    start = datetime.fromisoformat(job["started"].replace("Z", "+00:00"))
    end = (
        datetime.fromisoformat(job["finished"].replace("Z", "+00:00"))
        if job.get("finished")
        else datetime.now(timezone.utc)
    )
    seconds = int((end - start).total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def value_words(value: Any) -> str:
    """A parameter value in a run's name and the sweep table: text as it is, else Python's repr."""
    return value if isinstance(value, str) else repr(value)


def metric_words(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def sweep_table(job: dict[str, Any], indent: str = "") -> str:
    """A sweep job's runs as a table: one row per run, its swept parameters, the last value of each
    metric, status and duration (as `jupyter-ext status SWEEP` and the end of `run --sweep` print it)."""
    sweep = job["sweep"]
    names, metrics = list(sweep["parameters"]), list(sweep["metrics"])
    rows = [("RUN", *names, *metrics, "STATUS", "DURATION")]
    for child in sweep["children"]:
        params, values = child.get("parameters") or {}, child.get("metrics") or {}
        rows.append(
            (
                child["id"],
                *(value_words(params[n]) if n in params else "-" for n in names),
                *(metric_words(values[m]) if m in values else "-" for m in metrics),
                child["status"],
                duration(child),
            )
        )
    return table(rows, indent)


def sweep_progress(job: dict[str, Any]) -> str:
    """`4/6 runs` (ended of all) for the list."""
    children = job["sweep"]["children"]
    ended = sum(1 for c in children if c["status"] not in ("queued", "running"))
    return f"{ended}/{len(children)} runs"


def table(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Rows as aligned columns (the first row is the header), one line each."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
