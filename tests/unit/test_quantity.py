"""Quantity parsers: nothing but ValidationError escapes, whatever the input; valid values round-trip."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_ext import quantity
from jupyter_ext.errors import ValidationError

PARSERS: list[Callable[..., Any]] = [
    quantity.parse_memory,
    quantity.parse_cpu,
    quantity.parse_gpu,
    quantity.parse_duration,
    quantity.parse_retries,
]
FAST = settings(max_examples=150, deadline=None, database=None)

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet="0123456789.-+ eEKMGTPinumkhsd"),
    st.binary(max_size=8),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@FAST
@given(value=anything)
@pytest.mark.parametrize("parse", PARSERS, ids=lambda f: f.__name__)
def test_only_validation_errors_escape(parse: Callable[..., Any], value: object) -> None:
    try:
        parse(value)
    except ValidationError as exc:
        assert exc.field and exc.message.startswith(f"{exc.field}: ")


@FAST
@given(
    number=st.integers(min_value=1, max_value=4096), suffix=st.sampled_from(["", "Ki", "Mi", "Gi", "Ti", "k", "M", "G"])
)
def test_memory_round_trip(number: int, suffix: str) -> None:
    scale = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}[suffix]
    parsed = quantity.parse_memory(f"{number}{suffix}")
    assert parsed == number * scale
    assert quantity.parse_memory(quantity.format_bytes(parsed)) == parsed


@FAST
@given(millis=st.integers(min_value=1, max_value=10**7))
def test_cpu_round_trip(millis: int) -> None:
    assert quantity.parse_cpu(f"{millis}m") == pytest.approx(millis / 1000)
    assert Decimal(str(quantity.parse_cpu(f"{millis}m"))) * 1000 == millis


@FAST
@given(st.integers(min_value=0, max_value=1024))
def test_gpu_round_trip(count: int) -> None:
    assert quantity.parse_gpu(str(count)) == count == quantity.parse_gpu(count)


@FAST
@given(st.integers(min_value=0, max_value=100))
def test_retries_round_trip(count: int) -> None:
    assert quantity.parse_retries(str(count)) == count


@FAST
@given(hours=st.integers(0, 100), minutes=st.integers(0, 59), seconds=st.integers(0, 59))
def test_duration_round_trip(hours: int, minutes: int, seconds: int) -> None:
    total = hours * 3600 + minutes * 60 + seconds
    text = "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
    if total == 0:
        with pytest.raises(ValidationError):
            quantity.parse_duration("0s")
    else:
        assert quantity.parse_duration(text) == total
        assert quantity.parse_duration(total) == total


# Found by the property above with larger inputs (Python's own int/float limits).
@pytest.mark.parametrize("parse", [quantity.parse_gpu, quantity.parse_retries], ids=lambda f: f.__name__)
def test_thousands_of_digits(parse: Callable[..., Any]) -> None:
    with pytest.raises(ValidationError):
        parse("9" * 5000)


def test_duration_of_a_huge_int() -> None:
    with pytest.raises(ValidationError):
        quantity.parse_duration(10**400)
