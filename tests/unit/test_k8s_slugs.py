"""Kubernetes names and label values: always valid, unchanged when already valid, never colliding."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_ext.backends.slugs import is_dns_label, is_label_value, job_name, label_value, safe_slug

FAST = settings(max_examples=200, deadline=None, database=None)
DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")

# Texts that look like our own output, or differ from each other only in what slugging drops.
tricky = st.one_of(
    st.text(max_size=90),
    st.text(alphabet="aZ9-_. /", max_size=70),
    st.builds(lambda a, h: f"{a}---{h}", st.text(alphabet="ab-", min_size=1, max_size=5), st.text("0123456789abcdef")),
)


def valid_name(s: str) -> bool:
    return 0 < len(s) <= 63 and DNS_LABEL.fullmatch(s) is not None


def valid_label(s: str) -> bool:
    return len(s) <= 63 and LABEL_VALUE.fullmatch(s) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train", "train"),
        ("train-model-v2", "train-model-v2"),
        ("Train Model/v2", "train-model-v2---31540e3c"),
        ("a--b", "a-b---90827a2e"),  # valid, but '--' is how hashed names are told apart
        ("9lives", "x-9lives---bc867356"),
        ("", "x---e3b0c442"),
        ("Ünïcode", "n-code---00b24be8"),
        ("start---f587e2dc", "start-f587e2dc---cc5bb9c9"),
        ("x" * 63, "x" * 63),
        ("x" * 64, "x" * 52 + "---7ce10097"),
    ],
)
def test_safe_slug_examples(text: str, expected: str) -> None:
    assert safe_slug(text) == expected


def test_safe_slug_respects_a_shorter_limit() -> None:
    assert safe_slug("abcdefghijklmnop", max_length=16) == "abcdefghijklmnop"
    slug = safe_slug("abcdefghijklmnopq", max_length=16)
    assert len(slug) == 16 and slug.startswith("abcde---")
    with pytest.raises(ValueError):
        safe_slug("x", max_length=11)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("ABC123def", "ABC123def"),  # label values keep their case
        ("alice.smith_2", "alice.smith_2"),
        ("Train Model/v2", "Train-Model-v2---31540e3c"),
        ("alice@example.com", "alice-example.com---ff8d9819"),
        ("_hidden", "hidden---7a1f9c09"),
        ("x" * 64, "x" * 52 + "---7ce10097"),
    ],
)
def test_label_value_examples(text: str, expected: str) -> None:
    assert label_value(text) == expected


def test_job_name_is_readable_and_bounded() -> None:
    assert job_name("3f2a9c1b7d4e", "train", 1) == "jx-3f2a9c1b7d4e-train-1-ccd603bd"
    assert job_name("3f2a9c1b7d4e", "Train Model/v2", 2) == "jx-3f2a9c1b7d4e-train-model-v2-2-38778d3a"
    long = job_name("ABC-Upper", "x" * 100, 100)
    assert len(long) == 63 and long.startswith("jx-abc-upper-xxx") and long.endswith("-100-e4e1ad52")
    assert valid_name(job_name("", "", 0))
    # Joining parts is ambiguous; the hash of the raw parts is not.
    assert job_name("a-b", "c", 1) != job_name("a", "b-c", 1)
    with pytest.raises(ValueError):
        job_name("j", "s", -1)


@FAST
@given(text=tricky, max_length=st.integers(12, 63))
def test_safe_slug_is_always_valid(text: str, max_length: int) -> None:
    slug = safe_slug(text, max_length)
    assert valid_name(slug) and len(slug) <= max_length
    assert is_dns_label(slug, max_length)
    if valid_name(text) and len(text) <= max_length and "--" not in text:
        assert slug == text


@FAST
@given(text=tricky)
def test_label_value_is_always_valid(text: str) -> None:
    value = label_value(text)
    assert valid_label(value) and is_label_value(value)
    if valid_label(text) and "--" not in text:
        assert value == text


@FAST
@given(texts=st.sets(tricky, max_size=40))
def test_distinct_texts_give_distinct_slugs(texts: set[str]) -> None:
    assert len({safe_slug(t) for t in texts}) == len(texts)
    assert len({safe_slug(t, 20) for t in texts}) == len(texts)
    assert len({label_value(t) for t in texts}) == len(texts)


@FAST
@given(
    attempts=st.sets(
        st.tuples(st.text(alphabet="aB1-", max_size=20), st.text(alphabet="aB1-/ ", max_size=70), st.integers(0, 200)),
        max_size=40,
    )
)
def test_job_names_are_valid_and_distinct(attempts: set[tuple[str, str, int]]) -> None:
    names = {job_name(*a) for a in attempts}
    assert len(names) == len(attempts)
    assert all(valid_name(n) for n in names)
