"""The cached-step key (jupyter_ext/cache.py `step_key`) and the `cache` tags (tags.py, plan.py)."""

from __future__ import annotations

from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from jupyter_ext.cache import KEY_VERSION, replayed, step_key
from jupyter_ext.errors import ValidationError
from jupyter_ext.notebook import plan_notebook, slice_step
from jupyter_ext.notebook.tags import collect_tags

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def notebook(cells: list[tuple[list[str], str]], **metadata: Any) -> nbformat.NotebookNode:
    nb = new_notebook(metadata={**KERNEL, **metadata})
    for tags, source in cells:
        nb.cells.append(new_markdown_cell(source) if tags == ["md"] else new_code_cell(source, metadata={"tags": tags}))
    return nb


def three(load: str = "data = list(range(n))", train: str = "total = sum(data) * lr", report: str = "print(total)"):
    return notebook(
        [
            (["imports"], "import math"),
            (["parameters"], "n = 5\nlr = 0.1\nunused = 'x'"),
            (["step:load", "cache"], load),
            (["step:train", "after:load", "cache"], train),
            (["step:report", "after:train", "cache"], report),
        ]
    )


def key(
    nb: nbformat.NotebookNode,
    step: str,
    parameters: dict[str, Any] | None = None,
    handoffs: dict[str, str] | None = None,
    image: str | None = None,
    kernel: str | None = None,
) -> str:
    plan = plan_notebook(nb)
    spec = plan.step(step)
    given = handoffs if handoffs is not None else {v: "0" * 64 for v in spec.inputs}
    return step_key(
        slice_step(nb, plan, step),
        nb,
        step=step,
        parameters=parameters or {},
        handoffs=given,
        image=image,
        kernel=kernel,
    )


def test_the_key_is_versioned_and_stable() -> None:
    first = key(three(), "train")
    assert first.startswith(f"{KEY_VERSION}:") and len(first) == len("v1:") + 64
    assert key(three(), "train") == first


def test_a_parameter_the_step_does_not_read_does_not_change_its_key() -> None:
    base = key(three(), "load")
    assert key(three(), "load", {"lr": 0.5}) == base, "load does not read lr"
    assert key(three(), "load", {"unused": "y"}) == base
    assert key(three(), "load", {"n": 6}) != base, "load reads n"
    assert key(three(), "train", {"lr": 0.5}) != key(three(), "train"), "train reads lr"
    assert key(three(), "train", {"n": 6}) == key(three(), "train"), "train gets data, not n"


def test_a_parameter_given_as_its_default_is_the_default() -> None:
    assert key(three(), "load", {"n": 5}) == key(three(), "load")


def test_changing_a_default_the_step_does_not_read_keeps_its_key() -> None:
    edited = three()
    edited.cells[1].source = "n = 5\nlr = 0.9\nunused = 'x'"
    assert key(edited, "load") == key(three(), "load")
    assert key(edited, "train") != key(three(), "train")


def test_a_default_computed_from_another_parameter_reads_that_one() -> None:
    nb = notebook(
        [
            (["parameters"], "n = 5\nsteps = n * 2"),
            (["step:a", "cache"], "print(steps)"),
        ]
    )
    assert key(nb, "a", {"n": 6}) != key(nb, "a")


def test_source_changes_change_the_key() -> None:
    assert key(three(report="print(total, 'edited')"), "report") != key(three(), "report")
    assert key(three(report="print(total, 'edited')"), "train") == key(three(), "train"), "only report changed"
    imports = three()
    imports.cells[0].source = "import math, os"
    assert key(imports, "load") != key(three(), "load"), "the imports cell is part of every step"


def test_prose_does_not_change_the_key() -> None:
    nb = three()
    nb.cells.insert(0, new_markdown_cell("# A title"))
    # the markdown cell moves the others' indices; the hand-off cells name the defining cell, so compare a
    # step without outputs
    assert key(nb, "report") == key(three(), "report")


def test_handoff_content_changes_the_key() -> None:
    a = key(three(), "train", handoffs={"data": "a" * 64})
    assert key(three(), "train", handoffs={"data": "a" * 64}) == a
    assert key(three(), "train", handoffs={"data": "b" * 64}) != a


def test_image_kernel_and_step_name_change_the_key() -> None:
    base = key(three(), "load")
    assert key(three(), "load", image="python:3.12") != base
    assert key(three(), "load", kernel="other") != base
    assert key(three(), "load", kernel="python3") == base, "the notebook's own kernel, named"


def test_an_unreadable_step_counts_every_parameter_as_read() -> None:
    nb2 = notebook([(["parameters"], "n = 5\nlr = 0.1"), (["step:a", "cache"], "print(n)")])
    assert key(nb2, "a", {"lr": 1.0}) == key(nb2, "a")
    # a cell Python cannot read: any parameter may matter
    plan = plan_notebook(nb2)
    sliced = slice_step(nb2, plan, "a")
    sliced.cells[-1].source = "def (:"
    one = step_key(sliced, nb2, step="a", parameters={}, handoffs={}, image=None, kernel=None)
    other = step_key(sliced, nb2, step="a", parameters={"lr": 1.0}, handoffs={}, image=None, kernel=None)
    assert one != other


# -- the tags -------------------------------------------------------------------------------------------------------
def test_cache_tags_and_notebook_metadata_set_step_cache() -> None:
    plan = plan_notebook(
        notebook(
            [
                (["step:a", "cache"], "x = 1"),
                (["step:b", "after:a"], "y = x"),
                (["step:c", "after:b", "cache", "cache:off"], "print(y)"),
            ]
        )
    )
    assert [s.cache for s in plan.steps] == [True, None, False], "None: not asked for; False: cache:off"
    assert [s.to_spec().cache for s in plan.steps] == [True, None, False]
    everywhere = plan_notebook(
        notebook(
            [(["step:a"], "x = 1"), (["step:b", "after:a", "cache:off"], "y = x"), (["step:c", "after:b"], "print(y)")],
            jupyter_ext={"cache": True},
        )
    )
    assert [s.cache for s in everywhere.steps] == [True, False, True], "cache:off wins over the notebook's"


def test_cache_off_on_any_cell_of_the_step_wins() -> None:
    plan = plan_notebook(notebook([(["step:a", "cache"], "x = 1"), (["cache:off"], "y = 2")]))
    assert plan.steps[0].cache is False


@pytest.mark.parametrize(
    ("tag", "words"),
    [
        ("cache:on", "is not a cache tag; use 'cache'"),
        ("cache:", "is not a cache tag"),
        ("Cache:off", "did you mean 'cache:off'?"),
        ("cached", "did you mean 'cache'?"),
    ],
)
def test_bad_cache_tags_name_the_cell_and_the_tag(tag: str, words: str) -> None:
    _, problems = collect_tags([tag], 2)
    assert len(problems) == 1 and problems[0].tag == tag
    assert problems[0].message.startswith(f"cell 3: tag {tag!r}") and words in problems[0].message


def test_a_cache_tag_off_a_step_is_an_error() -> None:
    with pytest.raises(ValidationError, match=r"cell 1: tag 'cache' has no effect on an imports cell"):
        plan_notebook(notebook([(["imports", "cache"], "import os"), (["step:a"], "x = 1")]))


def test_notebook_cache_metadata_must_be_true_or_false() -> None:
    with pytest.raises(ValidationError, match=r"cache"):
        plan_notebook(notebook([(["step:a"], "x = 1")], jupyter_ext={"cache": "sometimes"}))


# -- the replay -----------------------------------------------------------------------------------------------------
def test_replayed_events_drop_their_job_and_point_at_the_linked_artifacts(tmp_path: Any) -> None:
    events = [
        {"v": 1, "job": "old", "seq": 4, "ts": 1.0, "type": "cell.output", "step": "a", "attempt": 2,
         "output": {"output_type": "display_data", "data": {}}, "artifact": "a__cell1-output1.png"},
        {"v": 1, "job": "old", "seq": 5, "ts": 1.0, "type": "artifact", "step": "a", "attempt": 2,
         "path": "cell1-output1.png", "name": "a__cell1-output1.png", "location": "/old/x.png", "size": 3},
        {"v": 1, "job": "old", "seq": 6, "ts": 1.0, "type": "metric", "step": "a", "attempt": 2, "name": "loss",
         "value": 0.5},
    ]  # fmt: skip
    out = replayed(events, step="a", artifacts=tmp_path)
    assert [set(e) & {"v", "job", "seq", "ts"} for e in out] == [set(), set(), set()]
    assert out[0]["artifact"] == "cell1-output1.png" and out[0]["attempt"] == 2
    assert out[1]["location"] == str(tmp_path / "cell1-output1.png") and "name" not in out[1]
    assert out[2]["name"] == "loss", "a metric keeps its name"
