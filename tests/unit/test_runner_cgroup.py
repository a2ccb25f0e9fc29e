"""runner/cgroup.py over fake cgroup folders (a real memory cgroup with an OOM kill needs a
limit we may not set here; the real node's OOM test covers that end to end), and the words the
runner gives a dead kernel."""

from __future__ import annotations

import signal
from pathlib import Path

from jupyter_ext.runner import cgroup
from jupyter_ext.runner.main import kernel_died_error


def v2(root: Path, rel: str, limit: str, kills: int) -> None:
    own = root.joinpath(*rel.strip("/").split("/"))
    own.mkdir(parents=True, exist_ok=True)
    (own / "memory.max").write_text(limit + "\n")
    (own / "memory.events").write_text(f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {kills}\n")


def test_v2_limit_is_the_tightest_on_the_way_up_and_kills_are_counted(tmp_path: Path) -> None:
    v2(tmp_path, "/kubepods", str(256 << 20), 0)
    v2(tmp_path, "/kubepods/pod1", "max", 2)
    found = cgroup.read_memory_cgroup("0::/kubepods/pod1\n", tmp_path)
    assert found is not None
    assert (found.version, found.limit, found.oom_kills) == (2, 256 << 20, 2)
    assert found.path == str(tmp_path / "kubepods" / "pod1")


def test_v2_in_a_container_reads_its_own_cgroup_at_the_root(tmp_path: Path) -> None:
    # /proc/self/cgroup names the host's path, which does not exist inside the container.
    v2(tmp_path, "/", str(128 << 20), 1)
    found = cgroup.read_memory_cgroup("0::/kubepods/burstable/podX/abc\n", tmp_path)
    assert found is not None and found.limit == 128 << 20 and found.oom_kills == 1


def test_v1_limit_kills_and_unlimited(tmp_path: Path) -> None:
    own = tmp_path / "memory" / "job"
    own.mkdir(parents=True)
    (own / "memory.limit_in_bytes").write_text(str(9223372036854771712))  # v1's "no limit"
    (own / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
    (own / "memory.failcnt").write_text("7\n")
    found = cgroup.read_memory_cgroup("12:memory:/job\n3:cpu,cpuacct:/job\n", tmp_path)
    assert found is not None
    assert (found.version, found.limit, found.oom_kills, found.failcnt) == (1, None, 4, 7)


def test_no_memory_controller_is_none(tmp_path: Path) -> None:
    assert cgroup.read_memory_cgroup("3:cpu:/x\n", tmp_path) is None
    assert cgroup.read_memory_cgroup("0::/x\n", tmp_path) is None


def test_oom_killed_compares_two_readings() -> None:
    before = cgroup.MemoryCgroup(2, "/x", 1 << 27, 0)
    assert cgroup.oom_killed(before, cgroup.MemoryCgroup(2, "/x", 1 << 27, 1))
    assert not cgroup.oom_killed(before, cgroup.MemoryCgroup(2, "/x", 1 << 27, 0))
    assert not cgroup.oom_killed(before, None)
    # Old v1 kernels without oom_kill: a limit that was hit is the sign.
    old = cgroup.MemoryCgroup(1, "/x", 1 << 27, None, failcnt=0)
    assert cgroup.oom_killed(old, cgroup.MemoryCgroup(1, "/x", 1 << 27, None, failcnt=3))
    assert not cgroup.oom_killed(old, cgroup.MemoryCgroup(1, "/x", None, None, failcnt=3))


def test_human_bytes() -> None:
    assert cgroup.human_bytes(128 << 20) == "128 MiB"
    assert cgroup.human_bytes(1 << 30) == "1 GiB"
    assert cgroup.human_bytes(1536 << 20) == "1.5 GiB"
    assert cgroup.human_bytes(10) == "10 bytes"


class Died(Exception):
    def __init__(self, sig: int | None, returncode: int | None = None) -> None:
        self.signal, self.returncode = sig, returncode
        self.ids = {"cell_index": 3, "cell_id": "c3", "other": 1}
        name = signal.Signals(sig).name if sig else None
        super().__init__(f"the kernel died (killed by {name})" if sig else f"the kernel exited with code {returncode}")


def test_a_sigkill_under_an_oom_kill_is_out_of_memory_naming_the_limit_and_tag() -> None:
    error = kernel_died_error(
        Died(signal.SIGKILL),
        "train",
        cgroup.MemoryCgroup(2, "/x", 128 << 20, 0),
        cgroup.MemoryCgroup(2, "/x", 128 << 20, 1),
    )
    assert error["reason"] == "oom" and error["limit_bytes"] == 128 << 20 and error["cell_index"] == 3
    assert "other" not in error
    assert error["message"] == (
        "step 'train' ran out of memory: its kernel was stopped when it reached the memory limit of 128 MiB; "
        "raise `memory:` on step 'train'"
    )


def test_any_other_death_is_said_as_it_was() -> None:
    same = cgroup.MemoryCgroup(2, "/x", None, 0)
    error = kernel_died_error(Died(signal.SIGKILL), "s", same, same)
    assert error["reason"] == "kernel_died" and error["signal"] == "SIGKILL"
    assert error["message"] == "the kernel died (killed by SIGKILL)"
    # No cgroup to read: a SIGKILL is most often the machine's memory, and the words say so.
    unknown = kernel_died_error(Died(signal.SIGKILL), "s", None, None)
    assert "often means the machine ran out of memory" in unknown["message"]
    exited = kernel_died_error(Died(None, 3), "s", same, same)
    assert exited["reason"] == "kernel_died" and exited["kernel_exit_code"] == 3 and "signal" not in exited
