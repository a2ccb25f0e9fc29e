"""200,000 lines printed with flush=True reach a WebSocket client whole and in order, and the job
ends (issue 11: before the runner fix about 30% were lost and a warm runner hung)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nbformat.v4 import new_code_cell

from tests.notebooks import _write
from tests.steps.test_fidelity import FLOOD, assert_whole, lines_of

pytestmark = pytest.mark.slow


async def test_flushed_flood_reaches_the_websocket_whole(api: Any, notebooks: Path) -> None:
    _write(notebooks, "flood.ipynb", [new_code_cell(f"for i in range({FLOOD}):\n    print('line', i, flush=True)")])
    job = await api.submit("flood.ipynb")
    events = await api.stream(job["id"], timeout=600)  # generous: 2 loaded cores
    assert events[-1]["type"] == "job.end" and events[-1]["status"] == "succeeded", events[-1]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "no event skipped on the wire"
    assert_whole(lines_of(events), FLOOD)
