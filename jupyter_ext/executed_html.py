"""The HTML copy of an executed notebook, made when it is first asked for, then kept.

Every step (and a job of several steps) lists `executed.html` beside its `executed.ipynb`, but
the HTML is not written when the step ends: nbconvert's lab template made it about 280 KB of a
trivial job's 300 KB on disk, for a copy few jobs ever open. The runner says so with an
`artifact` event carrying `deferred: true` (size 0); the first download (REST or CLI) renders
it from the `executed.ipynb` beside it, off the event loop, and records its real size.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .records import ArtifactRecord

NAME = "executed.html"
SOURCE = "executed.ipynb"

_lock = threading.Lock()  # one render at a time: nbconvert's exporter is not shared across threads
_exporter: Any = None


def is_deferred(artifact: Mapping[str, Any]) -> bool:
    """Whether this artifact is an executed notebook's HTML copy (made on demand)."""
    return str(artifact.get("name", "")).endswith(NAME) and Path(str(artifact.get("path", ""))).name == NAME


def render(target: Path) -> int:
    """Write `target` (an executed.html) from the executed.ipynb beside it unless it is there
    already; answers its size. FileNotFoundError when there is no notebook to make it from.
    Blocking (nbconvert): run it in a thread."""
    global _exporter
    with _lock:
        if target.is_file():
            return target.stat().st_size
        source = target.with_name(SOURCE)
        if not source.is_file():
            raise FileNotFoundError(f"no {SOURCE} beside {target} to make it from")
        import nbformat

        if _exporter is None:
            from nbconvert import HTMLExporter

            _exporter = HTMLExporter(template_name="lab")
        body, _ = _exporter.from_notebook_node(nbformat.read(source, as_version=4))
        # Written whole, then renamed: a reader never sees half a file, a crash leaves none.
        fd, tmp = tempfile.mkstemp(prefix=".executed-", suffix=".html", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target.stat().st_size


async def ensure(store: Any, job_id: str, artifact: ArtifactRecord) -> None:
    """Make a deferred HTML artifact's file if it is not there yet, and record its size (the
    artifact list said 0 until now). Anything else is left as it is."""
    path = Path(artifact["path"])
    if not is_deferred(artifact) or await asyncio.to_thread(path.is_file):
        return
    try:
        size = await asyncio.to_thread(render, path)
    except FileNotFoundError:
        return  # the caller reports the file as gone
    artifact["size"] = size
    await store.set_artifact_size(job_id, artifact["name"], size)
