"""The warm pool's size over time (issue 14): full at start, refilled in the background as soon
as a runner is taken, grown for steps known to be coming, shrunk when idle, bounded by memory.
Stand-in runners (a shell script) keep these fast; tests/steps/test_warm_pool.py uses real ones."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_ext.backends.local import LocalBackend
from jupyter_ext.backends.standby import RUNNER_BYTES_GUESS, StandbyPool

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _private_tmp(tmp: Path) -> Path:
    return tmp


@pytest.fixture
def ready_runner(tmp_path: Path) -> str:
    """Stands in for a standby runner: says it is ready (argv: -m jupyter_ext.runner --standby
    FOLDER), then waits for its one line of input and exits."""
    script = tmp_path / "fake-python"
    script.write_text('#!/bin/sh\ntouch "$4/ready-$$"\ncat > /dev/null\n')
    script.chmod(0o755)
    return str(script)


def until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def pool(python: str, size: int, **kw: Any) -> StandbyPool:
    p = StandbyPool(python, size, lambda: dict(os.environ), logging.getLogger("test"), **kw)
    p.starting = size  # the stand-ins cost nothing: start them side by side
    return p


def live(p: StandbyPool) -> list[subprocess.Popen[bytes]]:
    with p.lock:
        return [q for q in p.procs if q.poll() is None]


def test_refilled_after_a_take_and_shrunk_when_idle(ready_runner: str) -> None:
    p = pool(ready_runner, 3, idle=1.0, idle_size=1)
    p.start()
    try:
        until("a full pool", lambda: p.ready_count() == 3)
        measured = until("the runners measured", lambda: p.per_runner)
        assert 0 < measured < RUNNER_BYTES_GUESS, "measured on the (small) stand-ins, not guessed"
        before = live(p)
        taken = p.take(["--job", "j"], {"A": "1"})
        assert taken is not None and taken in before
        assert taken.wait(30) == 0, "the taken runner got its line and its end of input"
        until("the pool refilled", lambda: p.ready_count() == 3 and taken not in live(p))
        # No take for `idle` seconds: down to the idle size; the others really end.
        full = live(p)
        until("the pool shrunk when idle", lambda: p.alive_count() == 1)
        for proc in full:
            if proc not in live(p):
                assert proc.wait(30) == 0
        # Steps known to be coming grow it beyond its size, and it keeps that peak until idle.
        p.expect(5)
        until("the pool grown for the coming steps", lambda: p.ready_count() == 5)
        p.expect(0)
        assert p.target() == 5, "the peak is kept while the pool is busy"
        until("the pool shrunk again when idle", lambda: p.alive_count() == 1)
    finally:
        p.close()
    assert p.alive_count() == 0


def test_memory_cap_bounds_the_pool() -> None:
    p = pool("/bin/false", 8, memory=300 * MiB)
    assert p.target() == 300 * MiB // RUNNER_BYTES_GUESS, "a guess until a runner was measured"
    p.per_runner = 100 * MiB
    assert p.target() == 3
    p.expect(20)
    assert p.target() == 3, "coming steps do not break the cap"
    p.per_runner = 400 * MiB
    assert p.target() == 0
    assert pool("/bin/false", 0).target() == 0, "size 0 keeps the pool off"
    off = pool("/bin/false", 0)
    off.expect(4)
    assert off.target() == 0, "even with steps coming"


def test_backend_defaults_follow_the_concurrency_limit() -> None:
    backend = LocalBackend(gpus=[], max_concurrent=3, warm_pool_memory="1Gi")
    assert backend.warm_pool == 3 and backend._pool.size == 3
    assert backend._pool.memory == 1024 * MiB
    assert LocalBackend(gpus=[], warm_pool_memory=5 * MiB)._pool.memory == 5 * MiB
    assert LocalBackend(gpus=[], warm_pool=0)._pool.target() == 0
    default = LocalBackend(gpus=[])._pool.memory
    assert default is None or default > 0
    backend.expect_steps("a", 2)
    backend.expect_steps("b", 3)
    assert backend._pool.demand == 5
    backend.expect_steps("a", 0)
    assert backend._pool.demand == 3
