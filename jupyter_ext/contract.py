"""The few constants every room of jupyter-ext shares, defined once (docs/events.md, DESIGN.md).

A leaf: it imports nothing of the package and nothing outside the standard library, so the runner
(which ships into pods), the backends, the server, the CLI and the magics can all read it.
"""

from __future__ import annotations

from typing import Final

#: `v` of every event on the wire (runner -> backend -> store -> clients).
EVENT_VERSION: Final = 1

#: Statuses after which a job or step never changes again. `not_run`: a step skipped because
#: something upstream failed.
TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled", "not_run"})

#: Reason codes of a failing `step.end` (its `reason`, and `error.reason`) and of diagnostic events.
#: Clients key their presentation on these codes, never on the English words beside them.
REASONS: Final = (
    "oom",  # the memory limit was reached (cgroup OOM, OOMKilled)
    "unschedulable",  # no node can take the step as asked (FailedScheduling, quotas)
    "image_pull",  # the step's image cannot be pulled (ErrImagePull, ImagePullBackOff)
    "timeout",  # the step ran past its `timeout:`
    "evicted",  # the node took the pod back (eviction, preemption, node lost)
    "cancelled",  # somebody cancelled the job
    "exception",  # a cell raised
    "lost",  # the step's output channel could not be read, or its process vanished
    "kernel_died",  # the kernel died for another reason (segfault, os._exit)
)

#: Environment of a step's process: the hand-off inputs (a JSON object, variable -> file to load)
#: and the folder its outputs are saved in (notebook/handoff_io.py reads both in the kernel).
HANDOFF_IN_ENV: Final = "JUPYTER_EXT_HANDOFF_IN"
HANDOFF_OUT_ENV: Final = "JUPYTER_EXT_HANDOFF_OUT"

#: The files of one step attempt in its folder (`attempt_dir`), written by the runner and read by the
#: backends and the server (layout.AttemptFiles names them for the server side).
ATTEMPT_EVENTS: Final = "events.jsonl"  # the runner's events, one JSON object a line (local backend)
ATTEMPT_ARTIFACTS: Final = "artifacts"  # the step's artifacts folder
ATTEMPT_HANDOFF: Final = "handoff"  # the step's hand-off outputs (<name>.pkl, _manifest.json)
ATTEMPT_KERNEL_PID: Final = "kernel.pid"
ATTEMPT_PARAMETERS: Final = "parameters.json"
ATTEMPT_RUNNER_LOG: Final = "runner.log"
