"""What runs INSIDE a job: papermill with an event-emitting engine, plus artifact collection.

`python -m jupyter_ext.runner --help` shows the command line. The same code runs as a
local process (local backend) and as a pod's command (Kubernetes backend).
"""

from .emitter import LINE_PREFIX, Emitter, parse_line

__all__ = ["Emitter", "LINE_PREFIX", "parse_line"]
