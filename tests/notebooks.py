"""Small notebooks the tests run (written fresh into each test's server root)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _write(root: Path, name: str, cells: list) -> None:
    nbformat.write(new_notebook(cells=cells, metadata=KERNEL), root / name)


def write_test_notebooks(root: Path) -> None:
    _write(
        root,
        "quick.ipynb",
        [
            new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
            new_code_cell("print('first', x)"),
            new_markdown_cell("prose in between"),
            new_code_cell("import sys\nprint('to stderr', file=sys.stderr)\nx + 41"),
        ],
    )
    _write(
        root,
        "fails.ipynb",
        [
            new_code_cell("print('before')"),
            new_code_cell("raise ValueError('bad value in cell one')"),
            new_code_cell("print('never')"),
        ],
    )
    _write(
        root,
        "slow.ipynb",
        [
            new_code_cell("ticks = 40\ndelay = 0.25", metadata={"tags": ["parameters"]}),
            new_code_cell(
                "import time\nfor i in range(ticks):\n    print('tick', i, flush=True)\n    time.sleep(delay)"
            ),
            new_code_cell("print('done')"),
        ],
    )
    _write(
        root,
        "plot.ipynb",
        [
            new_code_cell(
                "import matplotlib.pyplot as plt\nfrom jupyter_ext import artifact_path\n"
                "plt.plot([1, 3, 2])\nplt.savefig(artifact_path('curve.png'))\nplt.show()"
            ),
            new_code_cell("from IPython.display import HTML\nHTML('<b>bold</b>')"),
        ],
    )
