"""plan_notebook: cell tags -> steps, on notebooks built in the test (no kernels)."""

from __future__ import annotations

from typing import Any

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

from jupyter_ext.errors import NotFound, ValidationError
from jupyter_ext.models import Resources
from jupyter_ext.notebook import Plan, plan_notebook

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def code(source: str, *tags: str) -> Any:
    return new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


def notebook(*cells: Any, **metadata: Any) -> Any:
    return new_notebook(cells=list(cells), metadata={**KERNEL, **metadata})


def steps(plan: Plan) -> dict[str, Any]:
    return {s.name: s for s in plan.steps}


def problems(nb: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        plan_notebook(nb)
    return info.value


# -- shapes ------------------------------------------------------------------------------------------------------
def test_untagged_notebook_is_one_main_step_without_parameters_and_skip_cells() -> None:
    nb = notebook(
        code("x = 1", "parameters"),
        code("print(x)"),
        new_markdown_cell("prose"),
        code("secret = 1", "skip"),
        code("import os", "imports"),  # no steps: an imports cell is just a cell of main
        code("y = x + 1", "hide-input"),
    )
    plan = plan_notebook(nb)
    assert [s.name for s in plan.steps] == ["main"]
    main = plan.steps[0]
    assert main.cells == [1, 4, 5]
    assert plan.parameters_cell == 0 and plan.parameters_cells == [0]
    assert plan.skipped_cells == [3]
    assert plan.prelude_cells == []
    assert plan.single
    assert main.inputs == main.outputs == []
    assert main.after == []


def test_empty_notebook_plans_an_empty_main_step() -> None:
    plan = plan_notebook(notebook(new_markdown_cell("only prose")))
    assert [(s.name, s.cells) for s in plan.steps] == [("main", [])]


def test_chain_with_untagged_cells_joining_the_step_above() -> None:
    nb = notebook(
        code("import math", "imports"),
        code("raw = [1, 2, 3]", "step:load"),
        code("raw.append(4)"),
        new_markdown_cell("## clean"),
        code("clean = [r * 2 for r in raw]", "step:clean", "after:load"),
        code("total = sum(clean)", "step:report", "prev:clean"),
        new_raw_cell("raw text"),
        code("print(total)"),
    )
    plan = plan_notebook(nb)
    by = steps(plan)
    assert plan.order() == ["load", "clean", "report"]
    assert by["load"].cells == [1, 2]
    assert by["clean"].cells == [4] and by["clean"].after == ["load"]
    assert by["report"].cells == [5, 7] and by["report"].after == ["clean"]
    assert plan.prelude_cells == [0]
    assert by["clean"].inputs == ["raw"] and by["clean"].sources == {"raw": "load"}
    assert by["load"].outputs == ["raw"] and by["load"].origins == {"raw": 1}
    assert by["report"].inputs == ["clean"]  # total is defined by report itself
    assert by["clean"].outputs == ["clean"] and by["report"].outputs == []


def test_diamond() -> None:
    nb = notebook(
        code("import statistics", "imports"),
        code("data = list(range(10))", "step:a"),
        code("evens = [d for d in data if d % 2 == 0]", "step:b", "after:a"),
        code("odds = [d for d in data if d % 2]", "step:c", "after:a"),
        code("result = statistics.mean(evens) - statistics.mean(odds)", "step:d", "after:b", "after:c"),
    )
    plan = plan_notebook(nb)
    by = steps(plan)
    assert plan.order() == ["a", "b", "c", "d"]
    assert by["d"].after == ["b", "c"]
    assert by["a"].outputs == ["data"]
    assert by["b"].inputs == ["data"] and by["c"].inputs == ["data"]
    assert by["b"].outputs == ["evens"] and by["c"].outputs == ["odds"]
    assert by["d"].inputs == ["evens", "odds"]
    assert by["d"].sources == {"evens": "b", "odds": "c"}
    assert "statistics" not in by["d"].inputs  # defined by the imports cell, which runs in every step
    graph = plan.graph()
    assert {n["id"] for n in graph["nodes"]} == {"a", "b", "c", "d"}
    assert {(e["source"], e["target"], tuple(e["variables"])) for e in graph["edges"]} == {
        ("a", "b", ("data",)),
        ("a", "c", ("data",)),
        ("b", "d", ("evens",)),
        ("c", "d", ("odds",)),
    }


def test_latest_ancestor_wins_when_several_define_a_name() -> None:
    nb = notebook(
        code("x = 1", "step:a"),
        code("x = x + 1", "step:b", "after:a"),
        code("print(x)", "step:c", "after:b"),
    )
    by = steps(plan_notebook(nb))
    assert by["b"].sources == {"x": "a"}
    assert by["c"].sources == {"x": "b"}
    assert by["a"].outputs == ["x"] and by["b"].outputs == ["x"]


def test_kale_style_notebook() -> None:
    nb = notebook(
        code("import json", "imports"),
        code("import os"),  # joins the imports block (Kale)
        code("LR = 0.1\nEPOCHS = 2", "pipeline-parameters"),
        code("def train(data, lr):\n    return [d * lr for d in data]", "functions"),
        code("data = [1, 2, 3]", "block:load_data"),
        code("print('debugging only')", "skip"),
        code("data.append(4)"),  # after a skip cell: joins the block above the skip (Kale)
        code("model = train(data, LR)", "step:train", "prev:load_data", "limit:nvidia.com/gpu:2"),
        code("accuracy = sum(model)"),
        code("print(accuracy)", "pipeline-metrics"),
        code("print(json.dumps(accuracy))"),
    )
    plan = plan_notebook(nb)
    by = steps(plan)
    assert plan.prelude_cells == [0, 1, 3]
    assert plan.parameters_cells == [2] and plan.parameters_cell == 2
    assert plan.skipped_cells == [5]
    assert by["load_data"].cells == [4, 6]
    assert by["train"].cells == [7, 8, 9, 10]
    assert by["train"].metrics_cells == [9]
    assert by["train"].resources.gpu == 2
    assert by["train"].resources.extra_limits == {"nvidia.com/gpu": "2"}
    assert by["train"].inputs == ["data"]
    assert "LR" not in by["train"].inputs and "train" not in by["train"].inputs


def test_block_alias_and_repeated_step_tag_appends() -> None:
    nb = notebook(
        code("a = 1", "block:prep"),
        code("b = a", "step:other", "after:prep"),
        code("c = 2", "step:prep"),  # Kale: a second step:prep cell appends to prep
        code("d = c"),
    )
    by = steps(plan_notebook(nb))
    assert by["prep"].cells == [0, 2, 3]
    assert by["other"].cells == [1]


def test_leading_untagged_cells_belong_to_no_step_as_in_kale() -> None:
    nb = notebook(code("print('setup')"), code("x = 1"), code("y = 2", "step:a"))
    plan = plan_notebook(nb)
    assert steps(plan)["a"].cells == [2]
    assert plan.skipped_cells == [0, 1]
    assert plan.warnings and "cells 1, 2" in plan.warnings[0]["message"]


def test_after_may_name_a_step_defined_further_down() -> None:
    nb = notebook(code("y = x", "step:late", "after:early"), code("x = 1", "step:early"))
    plan = plan_notebook(nb)
    assert plan.order() == ["early", "late"]
    assert [s.name for s in plan.steps] == ["early", "late"]
    assert steps(plan)["late"].sources == {"x": "early"}


def test_after_tag_on_a_continuation_cell_applies_to_the_step() -> None:
    nb = notebook(code("x = 1", "step:a"), code("y = 1", "step:b"), code("z = x", "after:a", "gpu:1"))
    by = steps(plan_notebook(nb))
    assert by["b"].after == ["a"] and by["b"].resources.gpu == 1


def test_markdown_and_raw_cells_are_ignored_even_when_tagged() -> None:
    nb = notebook(
        new_markdown_cell("# hi", metadata={"tags": ["step:nope", "setp:typo"]}),
        code("x = 1", "step:a"),
        new_raw_cell("raw", metadata={"tags": ["gpu:many"]}),
    )
    assert [s.name for s in plan_notebook(nb).steps] == ["a"]


def test_injected_parameters_cell_of_an_earlier_run_is_dropped() -> None:
    nb = notebook(code("x = 1", "parameters"), code("x = 2", "injected-parameters"), code("print(x)"))
    plan = plan_notebook(nb)
    assert plan.skipped_cells == [1] and plan.steps[0].cells == [2]


def test_step_resources_and_notebook_defaults() -> None:
    nb = notebook(
        code("a = 1", "step:small"),
        code("b = 1", "step:big", "gpu:2", "memory:16Gi", "cpu:500m", "image:repo/img:1.2", "timeout:2h", "retries:3"),
        code("c = 1", "memory:16384Mi"),  # same amount as 16Gi: not a conflict
        jupyter_ext={"resources": {"memory": "4Gi", "cpu": "1"}, "timeout": "1h", "retries": 1, "image": "base:1"},
    )
    by = steps(plan_notebook(nb, defaults=Resources(gpu=1, image="job:1")))
    small, big = by["small"], by["big"]
    assert small.resources.memory == "4Gi" and small.resources.cpu == "1"
    assert small.resources.gpu == 1  # from the job's defaults
    assert small.resources.image == "base:1"  # notebook metadata beats the job's defaults
    assert small.timeout == 3600 and small.retries == 1
    assert big.resources == Resources(gpu=2, memory="16Gi", cpu="500m", image="repo/img:1.2")
    assert big.timeout == 7200 and big.retries == 3
    spec = big.to_spec()
    assert spec.name == "big" and spec.resources.gpu == 2 and spec.timeout == 7200 and spec.cells == [1, 2]


def test_gpu_zero_tag_overrides_a_default_gpu() -> None:
    nb = notebook(code("x = 1", "step:cpu_only", "gpu:0"), jupyter_ext={"resources": {"gpu": 2}})
    assert plan_notebook(nb).steps[0].resources.gpu == 0


def test_kale_metadata_defaults() -> None:
    nb = notebook(
        code("x = 1", "step:a"),
        kubeflow_notebook={"docker_image": "kale/img:1", "steps_defaults": ["limit:nvidia.com/gpu:1", "label:a:b"]},
    )
    step = plan_notebook(nb).steps[0]
    assert step.resources.image == "kale/img:1" and step.resources.gpu == 1
    assert step.resources.extra_limits == {"nvidia.com/gpu": "1"}


def test_plan_step_lookup_names_the_known_steps() -> None:
    plan = plan_notebook(notebook(code("x = 1", "step:train")))
    with pytest.raises(NotFound, match="did you mean 'train'"):
        plan.step("trian")


def test_non_python_notebooks_get_no_handoff_analysis() -> None:
    nb = new_notebook(
        cells=[code("x <- 1", "step:a"), code("print(x) %>% f(", "step:b", "after:a")],
        metadata={"kernelspec": {"name": "ir", "display_name": "R", "language": "R"}},
    )
    by = steps(plan_notebook(nb))
    assert by["b"].inputs == [] and by["a"].outputs == []


# -- errors: every one names the cell, the tag and what would be valid --------------------------------------------
def test_typo_tags_are_errors_with_suggestions() -> None:
    nb = notebook(
        code("x = 1", "step:load"),
        code("y = 1", "setp:train"),
        code("z = 1", "gpus:2"),
        code("w = 1", "memroy:4Gi", "hide-input", "author:me"),
    )
    error = problems(nb)
    messages = [d["message"] for d in error.details]
    assert messages == [
        "cell 2: tag 'setp:train' is not a jupyter-ext tag; did you mean 'step:train'?",
        "cell 3: tag 'gpus:2' is not a jupyter-ext tag; did you mean 'gpu:2'?",
        "cell 4: tag 'memroy:4Gi' is not a jupyter-ext tag; did you mean 'memory:4Gi'?",
    ]
    assert [d["cell"] for d in error.details] == [1, 2, 3]
    assert [d["tag"] for d in error.details] == ["setp:train", "gpus:2", "memroy:4Gi"]
    assert error.cell == 1
    assert "3 problems" in error.message and "cell 5" not in error.message


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("memory:16GG", "'16GG' is not a Kubernetes quantity"),
        ("gpu:-1", "negative"),
        ("gpu:two", "not a whole number of GPUs"),
        ("timeout:soon", "not a duration"),
        ("retries:many", "not a whole number of retries"),
        ("cpu:0", "more than zero"),
    ],
)
def test_bad_quantities_name_cell_and_tag(tag: str, expected: str) -> None:
    error = problems(notebook(code("pass", "step:a"), code("pass", "step:b", tag)))
    assert error.message.startswith(f"cell 2: tag {tag!r} is invalid: ")
    assert expected in error.message
    assert error.cell == 1 and error.details[0]["tag"] == tag


def test_unknown_after_name_suggests_a_close_step() -> None:
    error = problems(notebook(code("x = 1", "step:train"), code("y = 1", "step:eval", "after:trian")))
    assert error.message == "cell 2: tag 'after:trian' names no step; did you mean 'train'?"
    assert error.details == [{"cell": 1, "step": "eval", "tag": "after:trian", "message": error.message}]


def test_unknown_after_name_without_a_close_one_lists_the_steps() -> None:
    error = problems(notebook(code("x = 1", "step:train"), code("y = 1", "step:eval", "prev:zzz")))
    assert "names no step; steps are: 'train', 'eval'" in error.message


def test_after_in_an_untagged_notebook_names_no_step() -> None:
    error = problems(notebook(code("x = 1", "after:load")))
    assert error.message.startswith("cell 1: tag 'after:load' names no step")


def test_cycle_names_its_path_and_tags() -> None:
    nb = notebook(
        code("a = 1", "step:a", "after:c"),
        code("b = 1", "step:b", "after:a"),
        code("c = 1", "step:c", "after:b"),
        code("d = 1", "step:d", "after:d"),
    )
    error = problems(nb)
    assert len(error.details) == 2
    first, second = (d["message"] for d in error.details)
    assert first.startswith("cell 1: steps 'a' -> 'b' -> 'c' -> 'a' form a cycle")
    assert "'after:c' on cell 1" in first and "'after:a' on cell 2" in first and "'after:b' on cell 3" in first
    assert "steps 'd' -> 'd' form a cycle" in second and "'after:d' on cell 4" in second


def test_conflicting_resources_across_cells_of_one_step() -> None:
    nb = notebook(
        code("x = 1", "step:train", "gpu:2"),
        code("y = 1", "step:eval"),
        code("z = 1", "step:train", "gpu:4"),  # appends to train, with another gpu count
        code("w = 1", "limit:nvidia.com/gpu:1"),
    )
    error = problems(nb)
    messages = [d["message"] for d in error.details]
    assert messages[0] == (
        "cell 3: tag 'gpu:4' conflicts with tag 'gpu:2' on cell 1: both set the gpu of step 'train'; keep one"
    )
    assert "cell 4: tag 'limit:nvidia.com/gpu:1' conflicts with tag 'gpu:2' on cell 1" in messages[1]
    assert [d["step"] for d in error.details] == ["train", "train"]


def test_conflicting_tags_on_one_cell() -> None:
    error = problems(notebook(code("x = 1", "step:a", "memory:1Gi", "memory:2Gi")))
    assert error.message == "cell 1: tag 'memory:2Gi' conflicts with tag 'memory:1Gi' on the same cell; keep one"


def test_two_roles_and_two_steps_on_one_cell() -> None:
    error = problems(notebook(code("x = 1", "imports", "step:a"), code("y = 1", "step:b", "step:c")))
    messages = [d["message"] for d in error.details]
    assert "cell 1: tags 'imports' and 'step:a' give the cell two roles" in messages[0]
    assert "cell 2: tags 'step:b', 'step:c' put the cell in 2 steps" in messages[1]


def test_skip_wins_over_a_step_tag_as_in_kale() -> None:
    plan = plan_notebook(notebook(code("x = 1", "step:a"), code("y = 1", "skip", "step:b", "gpu:9")))
    assert [s.name for s in plan.steps] == ["a"] and plan.skipped_cells == [1]


def test_step_tags_on_prelude_and_leading_cells_are_errors() -> None:
    nb = notebook(
        code("print('hi')", "gpu:1"),
        code("import os", "imports", "after:a"),
        code("x = 1", "parameters", "memory:1Gi"),
        code("y = 1", "step:a"),
    )
    messages = [d["message"] for d in problems(nb).details]
    assert messages == [
        "cell 1: tag 'gpu:1' has no effect on a cell before the first step; put it on a cell of a step",
        "cell 2: tag 'after:a' has no effect on an imports cell; put it on a cell of a step",
        "cell 3: tag 'memory:1Gi' has no effect on the parameters cell; put it on a cell of a step",
    ]


def test_metrics_before_any_step_is_an_error() -> None:
    error = problems(notebook(code("print(1)", "pipeline-metrics"), code("x = 1", "step:a")))
    assert error.message.startswith("cell 1: the 'pipeline-metrics' cell comes before any step")


def test_bad_step_names() -> None:
    error = problems(notebook(code("x = 1", "step:has space"), code("y = 1", "step:" + "x" * 64)))
    assert "cell 1: tag 'step:has space' has an invalid step name 'has space'" in error.details[0]["message"]
    assert "1 to 63 letters" in error.details[0]["message"]
    assert error.details[1]["cell"] == 1


def test_bad_notebook_metadata() -> None:
    nb = notebook(
        code("x = 1"),
        jupyter_ext={"resources": {"memory": "lots"}, "timout": "1h", "retries": -1},
    )
    messages = [d["message"] for d in problems(nb).details]
    assert any("metadata.jupyter_ext.resources.memory" in m and "'lots'" in m for m in messages)
    assert any("metadata.jupyter_ext.timout" in m and "unknown field" in m for m in messages)
    assert any("metadata.jupyter_ext.retries" in m for m in messages)


def test_all_problems_are_reported_at_once() -> None:
    nb = notebook(
        code("x = 1", "step:a", "gpu:lots"),
        code("y = 1", "step:b", "after:nope"),
        code("z = 1", "fuctions"),
        jupyter_ext={"timeout": "never"},
    )
    error = problems(nb)
    assert len(error.details) == 4
    assert {d["cell"] for d in error.details} == {None, 0, 1, 2}
    for detail in error.details:
        assert set(detail) == {"cell", "step", "tag", "message"}


def test_syntax_error_in_a_multi_step_notebook_names_the_cell() -> None:
    nb = notebook(code("x = 1", "step:a"), code("%matplotlib inline\ndef broken(:\n    pass", "step:b"))
    error = problems(nb)
    assert error.message.startswith("cell 2: cannot be analysed for hand-off: line 2")
    assert error.cell == 1


def test_warning_when_a_step_uses_a_name_only_a_sibling_defines() -> None:
    nb = notebook(
        code("x = 1", "step:a"),
        code("y = 1", "step:b"),
        code("print(x + y)", "step:c", "after:b"),
    )
    plan = plan_notebook(nb)
    assert steps(plan)["c"].inputs == ["y"]
    assert any("add the tag 'after:a'" in w["message"] and w["cell"] == 2 for w in plan.warnings)


def test_a_typo_is_the_only_error_no_made_up_cycle_or_step() -> None:
    # `setp:kid2` was meant to open step kid2; read as a cell of kid1 its `after:kid1` made kid1 wait for itself.
    nb = notebook(
        code("x = 1", "step:kid1"),
        code("y = x", "setp:kid2", "after:kid1"),
        code("z = y", "step:kid3", "after:kid2"),
    )
    error = problems(nb)
    assert [d["message"] for d in error.details] == [
        "cell 2: tag 'setp:kid2' is not a jupyter-ext tag; did you mean 'step:kid2'?"
    ]
    assert "cycle" not in error.message


def test_a_real_cycle_is_still_reported_beside_metadata_problems() -> None:
    nb = notebook(code("a = 1", "step:a", "after:b"), code("b = 1", "step:b", "after:a"), jupyter_ext={"timout": 1})
    messages = [d["message"] for d in problems(nb).details]
    assert any("form a cycle" in m for m in messages) and any("timout" in m for m in messages)


def test_messages_number_cells_as_lab_does_counting_markdown() -> None:
    # Lab's "cell 3" is the third cell of the notebook, markdown included; payloads keep the 0-based index.
    nb = notebook(new_markdown_cell("# Title"), code("x = 1", "step:a"), code("y = 1", "step:b", "gpu:two"))
    error = problems(nb)
    assert error.message.startswith("cell 3: tag 'gpu:two' is invalid")
    assert error.cell == 2 and error.details[0]["cell"] == 2
