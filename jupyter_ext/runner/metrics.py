"""Metrics: numbers a cell reports about its run (`jupyter_ext.log_metric`, Kale's `pipeline-metrics`).

In the kernel, `log_metric(name, value)` displays one output carrying the mime type `METRIC_MIME`
(`{"name", "value"}`) beside `text/plain` (`name = value`), so the cell shows it, the executed
notebook keeps it, and JupyterLab (which has no renderer for the mime type) shows the text. In a
job, the runner (engine.py) turns each such output into a `metric` event; the server stores it in
the `metrics` table (store.py) and the job view shows each name's last value.

Kale's metrics cell (tag `pipeline-metrics`) holds `print(name)` lines: after it ran, the runner asks
the kernel for each printed variable's value and logs it as the metric `name`.

Part of the runner room (it ships into pods): the standard library only.
"""

from __future__ import annotations

import ast
import math
import numbers
from collections.abc import Callable
from typing import Any

#: The mime type of a metric output: `{"name": str, "value": number}`.
METRIC_MIME = "application/vnd.jupyter-ext.metric+json"
#: The tag of Kale's metrics cell.
KALE_METRICS_TAG = "pipeline-metrics"
MAX_NAME_CHARS = 200


def check_name(name: object) -> str:
    """A metric's name: a non-empty string of at most MAX_NAME_CHARS characters, one line."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"log_metric: the name must be a non-empty string, not {name!r}")
    if len(name) > MAX_NAME_CHARS or "\n" in name:
        raise ValueError(f"log_metric: the name {name[:60]!r} must be one line of at most {MAX_NAME_CHARS} characters")
    return name


def metric_value(name: str, value: object) -> int | float:
    """`value` as a JSON number, or TypeError/ValueError naming the metric: a real number only (an
    int, a float, a numpy scalar); not a bool, NaN or an infinity (they have no place on a plot)."""
    type_name = type(value).__name__
    if isinstance(value, bool) or type_name in ("bool_", "bool"):
        raise TypeError(f"log_metric: metric {name!r} is a bool ({value!r}); log a number (e.g. int({value!r}))")
    if not isinstance(value, numbers.Real):
        raise TypeError(f"log_metric: metric {name!r} must be a real number, not {type_name} ({value!r:.60})")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"log_metric: metric {name!r} is {number!r}; only finite numbers are logged")
    if isinstance(value, numbers.Integral) and abs(int(value)) < 2**53:
        return int(value)
    return number


def output_metric(data: Any) -> tuple[str, int | float] | None:
    """The (name, value) an output's `data` carries under METRIC_MIME, if it is a valid one."""
    payload = data.get(METRIC_MIME) if isinstance(data, dict) else None
    if not isinstance(payload, dict):
        return None
    try:
        name = check_name(payload.get("name"))
        return name, metric_value(name, payload.get("value"))
    except (TypeError, ValueError):
        return None


def kale_metric_names(source: str) -> list[str]:
    """The variables a Kale metrics cell prints: its top-level `print(name)` statements, in order
    (Kale accepts nothing else in the cell; other statements are left alone here)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for statement in tree.body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "print"
            and len(call.args) == 1
            and not call.keywords
            and isinstance(call.args[0], ast.Name)
            and call.args[0].id not in names
        ):
            names.append(call.args[0].id)
    return names


def kale_expression(name: str) -> str:
    """What the kernel evaluates (a `user_expressions` entry) for the printed variable `name`:
    its value as a float, None for what is not a real number."""
    return (
        "(lambda v: None if isinstance(v, bool) or not isinstance(v, __import__('numbers').Real) "
        f"else float(v))({name})"
    )


def kale_value(reply: Any) -> float | None:
    """The number a `user_expressions` result of `kale_expression` carries, or None."""
    if not isinstance(reply, dict) or reply.get("status") != "ok":
        return None
    text = (reply.get("data") or {}).get("text/plain")
    if not isinstance(text, str):
        return None
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def kale_metrics(
    source: str,
    evaluate: Callable[[dict[str, str]], dict[str, Any]],
    emit: Callable[..., Any],
    ids: dict[str, Any],
) -> None:
    """After a `pipeline-metrics` cell ran: each variable it prints is logged as the metric of its
    name (`emit("metric", ...)`), its value read from the kernel by `evaluate` (user_expressions);
    one that is not a finite number is said on stderr instead."""
    names = kale_metric_names(source)
    if not names:
        return
    try:
        results = evaluate({n: kale_expression(n) for n in names})
    except Exception as exc:  # noqa: BLE001 - metrics are extra: the step goes on
        emit("log", stream="stderr", text=f"pipeline-metrics: could not read the metrics: {exc}\n")
        return
    for name in names:
        value = kale_value(results.get(name))
        if value is None:
            text = f"pipeline-metrics: {name!r} is not a finite number; it is not logged as a metric\n"
            emit("log", stream="stderr", text=text)
            continue
        emit("metric", name=name, value=value, cell=ids.get("cell_index"), **ids)


def log_metric(name: str, value: float) -> None:
    """Record a number about this run, e.g. `log_metric("accuracy", 0.93)`. In a job it becomes
    a `metric` event (the job view keeps each name's last value; a sweep's table shows them); run
    interactively it only shows `accuracy = 0.93`. `value` must be a real number (not a bool,
    NaN or an infinity): anything else raises TypeError/ValueError naming the metric."""
    name = check_name(name)
    number = metric_value(name, value)
    text = f"{name} = {number}"
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python without IPython
        print(text)
        return
    if get_ipython() is None:
        print(text)
        return
    display({METRIC_MIME: {"name": name, "value": number}, "text/plain": text}, raw=True)
