"""jupyter-ext: run notebook cells as jobs (local processes or Kubernetes) and watch them live."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

try:  # written by the build (hatch's version hook) from labextension/package.json, the one version
    from ._version import __version__
except ImportError:  # a source tree that was never built or installed
    import json

    __version__ = json.loads((Path(__file__).parents[1] / "labextension" / "package.json").read_text())["version"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import JupyterExt

    return [{"module": "jupyter_ext", "app": JupyterExt}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-ext"}]


def artifact_path(name: str) -> Path:
    """Where a notebook should write a file it wants kept as an artifact of its job.

    Inside a job this is the step's artifacts folder; run interactively it is ./artifacts.
    """
    base = Path(os.environ.get("JUPYTER_EXT_ARTIFACTS_DIR", "artifacts"))
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def log_metric(name: str, value: float) -> None:
    """Record a number about this run, e.g. `log_metric("accuracy", 0.93)`: in a job it becomes a
    `metric` event (the job view keeps each name's last value; a sweep's table shows them), run
    interactively it only shows `accuracy = 0.93`. `value` must be a real number (not a bool, NaN
    or an infinity); anything else raises TypeError/ValueError naming the metric."""
    from .runner.metrics import log_metric as log

    log(name, value)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext jupyter_ext`: registers `%%remote` and `%remote_jobs`."""
    from .magics import load_ipython_extension as load

    load(ipython)
