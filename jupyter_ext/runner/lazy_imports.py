"""Imports a process of ours can put off: called first thing by the runner (`__main__.py`) and the
command line (cli.py), never in a user's kernel or a server we do not own.

jsonschema, which nbformat imports (so papermill, so every step), imports `rfc3987_syntax` when it
is installed (jupyter_events pulls it in), and that module builds an Earley parser of the IRI
grammar at import: about 1 s of CPU in every process that reads a notebook, for the `iri` format
check, which the notebook schema never uses. `defer_iri_grammar` puts a stand-in in its place that
loads the real module the first time anything of it is used, so an `iri` check still runs the
real parser, only later.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any

IRI_MODULE = "rfc3987_syntax"


def defer_iri_grammar() -> bool:
    """Install the stand-in (True), unless jsonschema or the module is imported already, or the
    module is not installed (False: nothing to put off)."""
    if IRI_MODULE in sys.modules or "jsonschema" in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(IRI_MODULE)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return False
    module = importlib.util.module_from_spec(spec)  # the package, not yet run: its submodules import as usual
    lock = threading.Lock()
    real: Any = None

    def load() -> Any:
        nonlocal real
        with lock:
            if real is None:
                del module.__dict__["__getattr__"], module.__dict__["is_valid_syntax"]
                try:
                    assert spec.loader is not None
                    spec.loader.exec_module(module)  # the real package, run in this same module object
                    real = module.is_valid_syntax
                except Exception:  # noqa: BLE001 - as if it were not installed: jsonschema then checks no IRI
                    real = _no_check
        return real

    def is_valid_syntax(*args: Any, **kwargs: Any) -> Any:  # what jsonschema binds at its import
        return load()(*args, **kwargs)

    def __getattr__(name: str) -> Any:  # noqa: N807 - a module's attribute hook (PEP 562)
        load()
        try:
            return module.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {IRI_MODULE!r} has no attribute {name!r}") from None

    module.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[IRI_MODULE] = module
    return True


def _no_check(*args: Any, **kwargs: Any) -> bool:
    return True
