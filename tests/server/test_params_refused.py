"""POST jobs refuses a parameter the notebook does not declare, naming it and the known ones,
before anything is stored or run (issue 11: papermill only logged "Passed unknown parameter" and
the job ran with the defaults)."""

from __future__ import annotations

from typing import Any


async def test_a_mistyped_parameter_is_refused_before_anything_is_stored(api: Any) -> None:
    body = await api.submit("slow.ipynb", parameters={"tiks": 3}, expect=400)
    assert body["field"] == "parameters.tiks", body
    assert "'tiks' is not a parameter of 'slow.ipynb'; did you mean 'ticks'?" in body["message"], body
    assert "ticks, delay" in body["message"], "the notebook's parameters, closest first"
    assert (await api.call("GET", "jobs"))["jobs"] == [], "nothing was stored"
