"""The runner's background HTML thread must not import what the main thread imports at the same
time: two threads importing jupyter_client at once failed a diamond's parallel step in a cold
container with "cannot import name 'AsyncKernelManager' from partially initialized module
'jupyter_client.manager'". Checked in a fresh interpreter: when the thread starts, everything the
step's own path imports is already loaded."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys, threading
seen = {}
start = threading.Thread.start
def recording_start(self):
    if self.name == "html-exporter":
        seen.update({m: m in sys.modules for m in ("papermill", "nbclient", "jupyter_client.manager", "nbformat")})
    return start(self)
threading.Thread.start = recording_start
from jupyter_ext.runner.main import _HtmlWriter
_HtmlWriter()._thread.join()
print(seen)
"""


def test_the_html_thread_starts_after_the_step_path_is_imported() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own dict literal
    assert seen and all(seen.values()), seen
