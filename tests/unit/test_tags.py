"""The cell-tag grammar: valid tags parse, misspellings are errors, others are ignored; fuzzed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_ext.errors import ValidationError
from jupyter_ext.notebook.tags import BARE_TAGS, PREFIX_TAGS, parse_tags

FAST = settings(max_examples=200, deadline=None, database=None)


def test_a_full_step_cell() -> None:
    tags = parse_tags(
        [
            "step:train",
            "after:load",
            "prev:clean",
            "gpu:2",
            "memory:16Gi",
            "cpu:500m",
            "image:repo/img:1.0",
            "timeout:1h30m",
            "retries:3",
            "limit:example.com/fpga:1",
            "hide-input",
            "label:team:ml",
        ],
        4,
    )
    assert tags.role == "step" and tags.step == "train"
    assert list(tags.after) == ["load", "clean"]
    values = {name: s.value for name, s in tags.settings.items()}
    assert values == {
        "gpu": 2,
        "memory": "16Gi",
        "cpu": "500m",
        "image": "repo/img:1.0",
        "timeout": 5400.0,
        "retries": 3,
    }
    assert tags.limits == {"example.com/fpga": ("1", "limit:example.com/fpga:1")}
    assert tags.ignored == ["hide-input", "label:team:ml"]


@pytest.mark.parametrize(
    ("tag", "role"),
    [
        ("imports", "imports"),
        ("functions", "functions"),
        ("parameters", "parameters"),
        ("pipeline-parameters", "parameters"),
        ("skip", "skip"),
        ("injected-parameters", "injected"),
    ],
)
def test_roles(tag: str, role: str) -> None:
    assert parse_tags([tag], 0).role == role


def test_metrics_is_a_flag_and_empty_block_is_no_tag() -> None:
    tags = parse_tags(["pipeline-metrics", "block:"], 0)
    assert tags.metrics and tags.role is None and tags.step is None


def test_kale_gpu_limit_sets_gpu_too() -> None:
    tags = parse_tags(["limit:nvidia.com/gpu:2", "limit:memory:4Gi"], 0)
    assert tags.settings["gpu"].value == 2 and tags.settings["memory"].value == "4Gi"
    assert set(tags.limits) == {"nvidia.com/gpu", "memory"}


@pytest.mark.parametrize(
    ("tag", "suggestion"),
    [
        ("setp:train", "'step:train'"),
        ("gpus:2", "'gpu:2'"),
        ("memroy:4Gi", "'memory:4Gi'"),
        ("mem:4Gi", "'memory:4Gi'"),
        ("Step:train", "'step:train'"),
        ("aftr:load", "'after:load'"),
        ("timout:2h", "'timeout:2h'"),
        ("fuctions", "'functions'"),
        ("import", "'imports'"),
        ("params", "'parameters'"),
        ("Skip", "'skip'"),
        ("skip:yes", "'skip'"),
    ],
)
def test_typos_are_errors_with_a_suggestion(tag: str, suggestion: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_tags([tag], 4)
    assert info.value.message.startswith(f"cell 5: tag {tag!r} ")
    assert f"did you mean {suggestion}" in info.value.message
    assert info.value.cell == 4
    assert info.value.details == [{"cell": 4, "step": None, "tag": tag, "message": info.value.message}]


@pytest.mark.parametrize(
    "tag",
    [
        "hide-input",
        "remove-cell",
        "raises-exception",
        "skip-execution",
        "nbval-skip",
        "thebe-init",
        "important",
        "export",
        "memo:check this",
        "author:me",
        "stop:here now",
        "metrics",
        "hide",
    ],
)
def test_other_peoples_tags_are_ignored(tag: str) -> None:
    assert parse_tags([tag], 0).ignored == [tag]


@pytest.mark.parametrize("tag", ["step", "gpu", "after"])
def test_a_prefix_without_value(tag: str) -> None:
    with pytest.raises(ValidationError, match=f"cell 2: tag '{tag}' needs a value, e.g. '{tag}:"):
        parse_tags([tag], 1)


def test_every_bad_tag_of_a_cell_is_listed() -> None:
    with pytest.raises(ValidationError) as info:
        parse_tags(["gpu:two", "memory:16GG", "setp:x", 7], 2)
    assert [d["tag"] for d in info.value.details] == ["gpu:two", "memory:16GG", "setp:x", "7"]
    assert info.value.message.startswith("cell 3 has 4 problems:")


def test_absurd_values_are_validation_errors() -> None:
    for tag in ("gpu:" + "9" * 5000, "retries:" + "9" * 5000):
        with pytest.raises(ValidationError, match="cell 1: tag"):
            parse_tags([tag], 0)
    # A near-miss prefix whose value is not valid for our tag is someone else's tag.
    assert parse_tags(["gpus:" + "9" * 5000], 0).ignored


# -- fuzzing -----------------------------------------------------------------------------------------------------
prefixes = st.sampled_from([*PREFIX_TAGS, "setp", "gpus", "memroy", "mem", "Step", "limit", "x", ""])
tag_like = st.one_of(
    st.text(max_size=30),
    st.sampled_from(list(BARE_TAGS)),
    st.builds(lambda p, v: f"{p}:{v}", prefixes, st.text(max_size=20)),
    st.builds(lambda p, v: f"{p}:{v}", prefixes, st.text(alphabet="0123456789.-:/abcGiMmKkhs", max_size=12)),
)
tag_lists = st.one_of(
    st.lists(tag_like, max_size=6),
    st.lists(st.one_of(tag_like, st.integers(), st.none(), st.floats(), st.lists(st.text(), max_size=2)), max_size=4),
    st.one_of(st.none(), st.integers(), st.text(), st.dictionaries(st.text(max_size=3), st.text(max_size=3))),
)


@FAST
@given(tags=tag_lists, cell=st.integers(min_value=0, max_value=10_000))
def test_only_validation_errors_escape_and_they_name_the_cell(tags: object, cell: int) -> None:
    try:
        parsed = parse_tags(tags, cell)
    except ValidationError as exc:
        assert exc.cell == cell
        assert re.match(rf"cell {cell + 1}\D", exc.message), "words number cells from 1, as Lab does"
        assert all(d["cell"] == cell for d in exc.details)
    else:
        assert parsed.cell == cell


names = st.from_regex(r"[A-Za-z0-9_.-]{1,63}", fullmatch=True)


@FAST
@given(
    step=names,
    after=st.lists(names, max_size=3),
    gpu=st.integers(0, 1024),
    memory=st.integers(1, 10**6),
    unit=st.sampled_from(["Mi", "Gi", "M", "G", ""]),
    millicores=st.integers(1, 64_000),
    retries=st.integers(0, 100),
    minutes=st.integers(1, 10_000),
)
def test_valid_generated_tags_round_trip(
    step: str, after: list[str], gpu: int, memory: int, unit: str, millicores: int, retries: int, minutes: int
) -> None:
    tags = [
        f"step:{step}",
        *(f"after:{a}" for a in after),
        f"gpu:{gpu}",
        f"memory:{memory}{unit}",
        f"cpu:{millicores}m",
        f"retries:{retries}",
        f"timeout:{minutes}m",
    ]
    parsed = parse_tags(tags, 3)
    assert parsed.step == step and list(parsed.after) == list(dict.fromkeys(after))
    values = {name: s.value for name, s in parsed.settings.items()}
    assert values == {
        "gpu": gpu,
        "memory": f"{memory}{unit}",
        "cpu": f"{millicores}m",
        "retries": retries,
        "timeout": minutes * 60.0,
    }
