"""`jupyter-ext run` prints all of 200,000 lines printed with flush=True, in order, and exits 0
(issue 11: before the runner fix about 30% were lost and a warm runner hung)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell

from tests.cli.test_cli_honest import cli, isolated, write  # noqa: F401 - isolated is a fixture
from tests.steps.test_fidelity import FLOOD

pytestmark = pytest.mark.slow


def test_flushed_flood_is_printed_whole_by_the_cli(tmp_path: Path, isolated: dict[str, str]) -> None:  # noqa: F811
    nb = write(tmp_path, "flood.ipynb", [new_code_cell(f"for i in range({FLOOD}):\n    print('line', i, flush=True)")])
    result = cli("run", str(nb), env=isolated, timeout=900)  # generous: 2 loaded cores
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = []
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[-2] == "line" and words[-1].isdigit():
            numbers.append(int(words[-1]))
    if numbers != list(range(FLOOD)):
        missing = sorted(set(range(FLOOD)) - set(numbers))
        raise AssertionError(f"{len(numbers)} of {FLOOD} lines printed; {len(missing)} missing (first {missing[:5]})")
