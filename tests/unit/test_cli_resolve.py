"""cli.resolve_job: a short id names one job, or the error says which ids it could mean."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jupyter_ext.cli import resolve_job
from jupyter_ext.errors import NotFound, ValidationError


class Listing:
    """A session's job list (the part of a session resolve_job reads)."""

    def __init__(self, *ids: str) -> None:
        self.ids = ids

    async def jobs(self) -> list[dict[str, Any]]:
        return [{"id": i} for i in self.ids]


def resolve(session: Listing, given: str) -> str:
    return asyncio.run(resolve_job(session, given))


def test_a_prefix_of_one_job_is_its_id() -> None:
    assert resolve(Listing("a1b2c3d4e5f6", "a1ffffffffff"), "a1b2") == "a1b2c3d4e5f6"


def test_a_full_id_is_taken_as_it_is_without_listing() -> None:
    assert resolve(Listing(), "a1b2c3d4e5f6") == "a1b2c3d4e5f6"


def test_several_matches_are_named() -> None:
    with pytest.raises(ValidationError, match=r"'a1' starts 2 job ids \(a1b2c3d4e5f6, a1ffffffffff\)"):
        resolve(Listing("a1b2c3d4e5f6", "a1ffffffffff"), "a1")


def test_no_match_points_to_ls() -> None:
    with pytest.raises(NotFound, match="jupyter-ext ls"):
        resolve(Listing("a1b2c3d4e5f6"), "b2")
