"""Variables handed from step to step, the part that runs in the job's kernel: the code of the two
internal hand-off cells (slice.py adds them to a step's notebook), and `load_variables` /
`save_variables`, which those cells call. The planner's side (which names travel) is handoff.py.

The contract with the server (names in contract.py):

- ``JUPYTER_EXT_HANDOFF_IN``: a JSON object mapping each input variable to the file to load
  (the orchestrator decides which producer's file that is, and which attempt; the backend writes
  the paths as the step's process sees them);
- ``JUPYTER_EXT_HANDOFF_OUT``: the folder where this step saves ``<name>.pkl`` for each
  output, plus ``_manifest.json`` (type, size and defining cell of each saved variable,
  and the names the step did not define by its end).

Values are written with cloudpickle, so lambdas, closures and classes defined in the
notebook travel by value. A value that cannot be pickled fails the step with a message
naming the variable, its type, the step and the cell that defined it.

This module is imported inside job kernels: it stays light (standard library at import time;
cloudpickle and IPython only where used) and imports nothing of the package but contract.py.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from ..contract import HANDOFF_IN_ENV as ENV_IN
from ..contract import HANDOFF_OUT_ENV as ENV_OUT

MANIFEST = "_manifest.json"


def _cell(index: int) -> str:
    """A cell as a person names it: Lab's number, 1-based over all cells (indices stay 0-based)."""
    return f"cell {index + 1}"


# -- code of the hand-off cells ----------------------------------------------------------------------------------
def handoff_load_source(names: Sequence[str], directory_expr: str | None = None) -> str:
    """Code of the cell that loads `names` into the kernel before the step's own cells.

    `directory_expr` is a Python expression evaluated in the kernel giving a folder of
    ``<name>.pkl`` files or a mapping name -> file; by default the mapping comes from the
    ``JUPYTER_EXT_HANDOFF_IN`` environment variable (set by the orchestrator).
    """
    source = "" if directory_expr is None else f", source={directory_expr}"
    return (
        "# jupyter-ext: load the variables this step uses from the steps before it\n"
        "from jupyter_ext.notebook.handoff_io import load_variables as _jupyter_ext_load\n"
        f"_jupyter_ext_load(globals(), {list(names)!r}{source})\n"
        "del _jupyter_ext_load\n"
    )


def handoff_save_source(
    names: Sequence[str],
    step: str,
    directory_expr: str | None = None,
    *,
    origins: Mapping[str, int] | None = None,
) -> str:
    """Code of the cell that saves `names` for later steps after the step's own cells.

    `directory_expr` is a Python expression evaluated in the kernel giving the output folder;
    by default the ``JUPYTER_EXT_HANDOFF_OUT`` environment variable.
    """
    target = "" if directory_expr is None else f", out_dir={directory_expr}"
    cells = {name: int(origins[name]) for name in names if origins and name in origins}
    return (
        "# jupyter-ext: save the variables later steps use\n"
        "from jupyter_ext.notebook.handoff_io import save_variables as _jupyter_ext_save\n"
        f"_jupyter_ext_save(globals(), {list(names)!r}{target}, step={step!r}, origins={cells!r})\n"
        "del _jupyter_ext_save\n"
    )


# -- what runs in the kernel -------------------------------------------------------------------------------------
def type_name(value: object) -> str:
    """'sqlite3.Connection', 'pandas.core.frame.DataFrame', 'generator' (builtins unprefixed)."""
    kind = type(value)
    module = getattr(kind, "__module__", "") or ""
    qualname = getattr(kind, "__qualname__", kind.__name__)
    return qualname if module == "builtins" else f"{module}.{qualname}"


def save_variables(
    namespace: Mapping[str, Any],
    names: Sequence[str],
    out_dir: str | os.PathLike[str] | None = None,
    step: str = "",
    origins: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """Pickle each of `names` from `namespace` to ``<out_dir>/<name>.pkl``; returns name -> path.

    A value that cannot be pickled raises ValueError naming the variable, its type, the step
    and the cell that defined it. A name the step never bound is left out (and listed in the
    manifest): a later step that needs it fails with a NameError that names it.
    """
    import cloudpickle

    target = out_dir if out_dir is not None else os.environ.get(ENV_OUT)
    if not target:
        print(f"jupyter-ext: {ENV_OUT} is not set; variables are not saved for later steps", file=sys.stderr)
        return {}
    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    origins = origins or {}
    saved: dict[str, str] = {}
    manifest: dict[str, Any] = {"step": step, "variables": {}, "missing": []}
    for name in names:
        if name not in namespace:
            manifest["missing"].append(name)
            continue
        value = namespace[name]
        path = folder / f"{name}.pkl"
        partial = folder / f".{name}.pkl.partial"
        try:
            with open(partial, "wb") as fh:
                cloudpickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - pickling fails with any type; the message says which
            partial.unlink(missing_ok=True)
            raise ValueError(_unpicklable(name, value, step, origins.get(name), exc)) from exc
        os.replace(partial, path)
        saved[name] = str(path)
        manifest["variables"][name] = {
            "type": type_name(value),
            "bytes": path.stat().st_size,
            "cell": origins.get(name),
        }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if manifest["missing"]:
        missing = ", ".join(repr(n) for n in manifest["missing"])
        print(f"jupyter-ext: step {step!r} did not define {missing} by its end; not handed off", file=sys.stderr)
    return saved


def _unpicklable(name: str, value: object, step: str, cell: int | None, exc: BaseException) -> str:
    where = f" (defined in {_cell(cell)})" if cell is not None else ""
    return (
        f"cannot hand off variable {name!r} ({type_name(value)}) from step {step!r}{where} to later steps: "
        f"{type(exc).__name__}: {exc}. Objects such as connections, locks, open files and generators "
        "cannot be saved; create it in each step that needs it instead (for example in a 'functions' cell, "
        "which runs at the start of every step), or hand off the data it produced"
    )


def load_variables(
    namespace: MutableMapping[str, Any],
    names: Sequence[str],
    source: str | os.PathLike[str] | Mapping[str, str] | None = None,
) -> list[str]:
    """Load each of `names` into `namespace`; returns the names loaded.

    `source`: a mapping name -> file, a JSON text of one, or a folder of ``<name>.pkl``
    files; by default the JSON mapping in ``JUPYTER_EXT_HANDOFF_IN``.
    """
    import cloudpickle

    files = _files(source, names)
    loaded: list[str] = []
    missing: list[str] = []
    for name in names:
        path = files.get(name)
        if path is None or not Path(path).is_file():
            missing.append(name)
            continue
        try:
            with open(path, "rb") as fh:
                namespace[name] = cloudpickle.load(fh)
        except Exception as exc:  # noqa: BLE001 - unpickling fails with any type; the message says which
            raise ValueError(
                f"cannot load variable {name!r} handed off by an earlier step (from {path}): "
                f"{type(exc).__name__}: {exc}. If a module is missing, install it in this step's image"
            ) from exc
        loaded.append(name)
    if missing:
        listed = ", ".join(map(repr, missing))
        print(
            f"jupyter-ext: no value was handed off for {listed} (the step that defines it did not bind it by its end)",
            file=sys.stderr,
        )
    return loaded


def _files(source: str | os.PathLike[str] | Mapping[str, str] | None, names: Sequence[str]) -> dict[str, str]:
    if source is None:
        text = os.environ.get(ENV_IN)
        if text is None:
            if not names:
                return {}
            raise RuntimeError(
                f"this step needs {', '.join(names)} from earlier steps, but {ENV_IN} is not set; "
                "run the notebook through jupyter-ext"
            )
        source = text
    if isinstance(source, Mapping):
        return {str(k): str(v) for k, v in source.items()}
    text = os.fspath(source)
    if text.lstrip().startswith("{"):
        mapping = json.loads(text)
        if not isinstance(mapping, dict):  # pragma: no cover - a JSON text starting with { is an object
            raise ValueError(f"{ENV_IN} must be a JSON object mapping variable names to files")
        return {str(k): str(v) for k, v in mapping.items()}
    return {name: str(Path(text) / f"{name}.pkl") for name in names}
