"""Hand-off: which variables travel between steps, and saving/loading them (in-process, no kernel)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from jupyter_ext.notebook import plan_notebook
from jupyter_ext.notebook.handoff import CellSyntaxError, scan_cell
from jupyter_ext.notebook.handoff_io import (
    handoff_load_source,
    handoff_save_source,
    load_variables,
    save_variables,
)

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def code(source: str, *tags: str) -> Any:
    return new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


def planned(*cells: Any) -> dict[str, Any]:
    plan = plan_notebook(new_notebook(cells=list(cells), metadata=KERNEL))
    return {s.name: s for s in plan.steps}


# -- analysis of one cell ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "needs", "defines"),
    [
        ("x = y + 1", {"y"}, {"x"}),
        ("x = x + 1", {"x"}, {"x"}),
        ("total += 1", {"total"}, {"total"}),
        ("import os.path as p, sys\nfrom a import b", set(), {"p", "sys", "b"}),
        ("def f(q=default):\n    return model.predict(q)", {"default", "model"}, {"f"}),
        ("def f():\n    local = 1\n    return local", set(), {"f"}),
        ("def f():\n    global g\n    g = 1", set(), {"f", "g"}),
        ("class C(Base):\n    attr = other", {"Base", "other"}, {"C"}),
        ("for i in items:\n    acc = i", {"items"}, {"i", "acc"}),
        ("with open(p) as fh:\n    text = fh.read()", {"open", "p"}, {"fh", "text"}),
        ("if (n := len(data)) > 2:\n    pass", {"len", "data"}, {"n"}),
        ("[k := i for i in rng]", {"rng"}, {"k"}),
        ("squares = [v * v for v in values]", {"values"}, {"squares"}),
        ("f = lambda z: z + w", {"w"}, {"f"}),
        ("try:\n    import foo\nexcept ImportError as err:\n    foo = None", {"ImportError"}, {"foo", "err"}),
        ("%matplotlib inline\nimport numpy as np", {"get_ipython"}, {"np"}),
        ("!ls\nfiles = !ls", {"get_ipython"}, {"files"}),
        ("df?", {"get_ipython"}, set()),
        ("%time y = f(x)", {"get_ipython", "f", "x"}, {"y"}),
        ("%%time\nmodel = fit(data)\n", {"get_ipython", "fit", "data"}, {"model"}),
        ("%%capture captured\nprint(value)\n", {"get_ipython", "print", "value"}, {"captured"}),
        ("%timeit t = compute(u)", {"get_ipython", "compute", "u"}, set()),
        ("await asyncio.sleep(0)", {"asyncio"}, set()),
    ],
)
def test_scan_cell(source: str, needs: set[str], defines: set[str]) -> None:
    names = scan_cell(source, 0)
    assert names.needs == needs
    assert names.defines == defines


def test_reads_after_a_sure_binding_are_not_needs() -> None:
    assert scan_cell("x = 1\nprint(x)", 0).needs == {"print"}
    assert scan_cell("if c:\n    x = 1\nelse:\n    x = 2\nprint(x)", 0).needs == {"c", "print"}
    # Only maybe bound: the earlier step's value may still be what is read.
    assert "x" in scan_cell("if c:\n    x = 1\nprint(x)", 0).needs
    assert "x" in scan_cell("for i in r:\n    x = i\nprint(x)", 0).needs


def test_cell_that_does_not_parse() -> None:
    with pytest.raises(CellSyntaxError) as info:
        scan_cell("%load_ext foo\ndef broken(:\n", 7)
    assert info.value.cell == 7 and "line 2" in str(info.value)


# -- analysis of a plan ------------------------------------------------------------------------------------------
def test_names_flow_through_the_diamond() -> None:
    by = planned(
        code("import numpy as np", "imports"),
        code("def norm(v):\n    return v / np.linalg.norm(v)", "functions"),
        code("scale = 2", "parameters"),
        code("base = np.arange(5) * scale\nunused = 1", "step:a"),
        code("left = norm(base)", "step:b", "after:a"),
        code("right = base[::-1]\nbase = base + 1", "step:c", "after:a"),
        code("out = left + right + base", "step:d", "after:b", "after:c"),
    )
    assert by["a"].outputs == ["base"]  # unused: no later step needs it
    assert by["b"].inputs == ["base"] and by["c"].inputs == ["base"]
    assert by["b"].outputs == ["left"]
    assert by["c"].outputs == ["base", "right"]
    assert by["d"].inputs == ["base", "left", "right"]
    assert by["d"].sources == {"base": "c", "left": "b", "right": "c"}
    for step in by.values():  # np, norm, scale run in every step
        assert not {"np", "norm", "scale"} & set(step.inputs)


def test_a_step_that_rebinds_a_name_first_does_not_load_it() -> None:
    by = planned(code("frame = load()", "step:a"), code("frame = 'new'\nprint(frame)", "step:b", "after:a"))
    assert by["b"].inputs == [] and by["a"].outputs == []


def test_names_read_in_functions_and_lambdas_count() -> None:
    by = planned(
        code("model = object()\nthreshold = 3", "step:a"),
        code("predict = lambda v: (model, v > threshold)\ndef g():\n    return model", "step:b", "after:a"),
    )
    assert by["b"].inputs == ["model", "threshold"]


def test_magics_do_not_crash_and_their_code_counts() -> None:
    by = planned(
        code("%%time\ndata = [1, 2]\n", "step:a"),
        code("%matplotlib inline\n!echo hi\nres = !ls\n%time doubled = [d * 2 for d in data]", "step:b", "after:a"),
        code("print(doubled, res)", "step:c", "after:b"),
    )
    assert by["b"].inputs == ["data"]
    assert by["c"].inputs == ["doubled", "res"]


def test_builtins_and_kernel_names_are_not_handed_off_unless_rebound() -> None:
    by = planned(
        code("_ = 1\ndisplay = None\nlen = 3", "step:a"),
        code("print(len, _, display, sum([1]))", "step:b", "after:a"),
    )
    assert by["b"].inputs == ["len"]  # rebound by step a, as running top to bottom would see it


def test_parameters_reassigned_by_a_step_warn() -> None:
    nb = new_notebook(
        cells=[code("lr = 0.1", "parameters"), code("lr = lr * 2", "step:a"), code("print(lr)", "step:b", "after:a")],
        metadata=KERNEL,
    )
    plan = plan_notebook(nb)
    assert plan.steps[1].inputs == []
    assert any("'lr'" in w["message"] and "cell 1" in w["message"] for w in plan.warnings)


# -- saving and loading in the kernel ----------------------------------------------------------------------------
def kernel_namespace(source: str) -> dict[str, Any]:
    """Run `source` like a notebook cell: functions it defines live in __main__ (pickled by value)."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<cell>", "exec"), namespace)  # noqa: S102 - test code we wrote
    return namespace


def test_round_trip_of_data_models_and_functions(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    source = (
        "import numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import LinearRegression\n"
        "array = np.arange(6).reshape(2, 3)\n"
        "frame = pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})\n"
        "model = LinearRegression().fit(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 3.0, 5.0]))\n"
        "factor = 3\n"
        "double = lambda v: v * 2\n"
        "def make_scaler(k):\n"
        "    def scale(v):\n"
        "        return v * k * factor\n"
        "    return scale\n"
        "scaler = make_scaler(2)\n"
    )
    names = ["array", "frame", "model", "double", "scaler"]
    saved = save_variables(kernel_namespace(source), names, tmp_path, step="prep", origins={"model": 4})
    assert sorted(saved) == sorted(names)
    manifest = json.loads((tmp_path / "_manifest.json").read_text())
    assert manifest["variables"]["model"]["cell"] == 4
    assert manifest["variables"]["frame"]["type"].endswith("DataFrame")

    fresh: dict[str, Any] = {"__name__": "__main__"}
    mapping = {name: str(tmp_path / f"{name}.pkl") for name in names}
    assert load_variables(fresh, names, mapping) == names
    import numpy as np
    import pandas as pd

    np.testing.assert_array_equal(fresh["array"], np.arange(6).reshape(2, 3))
    pd.testing.assert_frame_equal(fresh["frame"], pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    assert fresh["model"].predict(np.array([[10.0]]))[0] == pytest.approx(21.0)
    assert fresh["double"](21) == 42
    assert fresh["scaler"](1) == 6  # the closure kept k=2 and the global factor=3


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (threading.Lock, "_thread.lock"),
        (lambda: (i for i in range(3)), "generator"),
        (lambda: sqlite3.connect(":memory:"), "sqlite3.Connection"),
    ],
)
def test_unpicklable_value_names_variable_type_step_and_cell(tmp_path: Path, make: Any, type_name: str) -> None:
    value = make()
    with pytest.raises(ValueError) as info:
        save_variables({"conn": value, "ok": 1}, ["ok", "conn"], tmp_path, step="load", origins={"conn": 3})
    assert str(info.value).startswith(
        f"cannot hand off variable 'conn' ({type_name}) from step 'load' (defined in cell 4) to later steps: "
    )
    assert not list(tmp_path.glob("*.partial"))
    if isinstance(value, sqlite3.Connection):
        value.close()


def test_variables_a_step_never_bound_are_listed_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert save_variables({"a": 1}, ["a", "maybe"], tmp_path, step="s") == {"a": str(tmp_path / "a.pkl")}
    assert json.loads((tmp_path / "_manifest.json").read_text())["missing"] == ["maybe"]
    assert "'maybe'" in capsys.readouterr().err
    fresh: dict[str, Any] = {}
    assert load_variables(fresh, ["a", "maybe"], str(tmp_path)) == ["a"]
    assert fresh == {"a": 1}


def test_environment_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    monkeypatch.setenv("JUPYTER_EXT_HANDOFF_OUT", str(out))
    namespace = kernel_namespace("rows = [1, 2, 3]\n")
    exec(handoff_save_source(["rows"], "load", origins={"rows": 2}), namespace)  # noqa: S102
    assert (out / "rows.pkl").is_file()
    assert "_jupyter_ext_save" not in namespace

    monkeypatch.setenv("JUPYTER_EXT_HANDOFF_IN", json.dumps({"rows": str(out / "rows.pkl")}))
    fresh: dict[str, Any] = {"__name__": "__main__"}
    exec(handoff_load_source(["rows"]), fresh)  # noqa: S102
    assert fresh["rows"] == [1, 2, 3]
    assert "_jupyter_ext_load" not in fresh


def test_loading_without_the_environment_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTER_EXT_HANDOFF_IN", raising=False)
    with pytest.raises(RuntimeError, match="needs rows from earlier steps, but JUPYTER_EXT_HANDOFF_IN is not set"):
        load_variables({}, ["rows"])


def test_a_file_that_does_not_unpickle_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cannot load variable 'model' handed off by an earlier step"):
        load_variables({}, ["model"], str(tmp_path))
