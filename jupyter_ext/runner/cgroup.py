"""What the memory cgroup of this process says: its limit and how many OOM kills it recorded.

The kernel is a child of the runner and lives in the runner's memory cgroup, so when the
cgroup's limit is hit the kernel (the big process) is killed and the runner survives: the
container does not exit 137 and Kubernetes reports no OOMKilled. The runner reads the cgroup
before and after to tell "killed by the memory limit" from any other SIGKILL.

Pure functions over a cgroup folder, so tests can point them at a fake one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# cgroup v1 writes "no limit" as a huge page-aligned number (PAGE_COUNTER_MAX * page size).
_UNLIMITED = 1 << 62


@dataclass(frozen=True)
class MemoryCgroup:
    """One reading of the memory controller. None where the file is missing or unreadable."""

    version: int  # 1 or 2
    path: str  # the folder read
    limit: int | None  # bytes; None when there is no limit
    oom_kills: int | None  # OOM kills recorded so far (v1 memory.oom_control / v2 memory.events)
    failcnt: int | None = None  # v1 only: times usage hit the limit


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if text in ("", "max"):
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _UNLIMITED else value


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _keyed(text: str | None, key: str) -> int | None:
    """`key N` from a flat-keyed file (memory.events, memory.oom_control)."""
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return _int(parts[1])
    return None


def _candidates(root: Path, relative: str) -> list[Path]:
    """The cgroup's folder and its ancestors up to `root`, deepest first. In a container the
    folder named in /proc/self/cgroup is the host's path and does not exist: the container's
    own cgroup is then mounted at `root` itself."""
    parts = [p for p in relative.strip("/").split("/") if p]
    folders = [root.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
    return [f for f in folders if f.is_dir()]


def _min_limit(folders: list[Path], name: str) -> int | None:
    """The tightest limit on the way up (a parent's limit binds its children too)."""
    limits = [v for v in (_int(_read(f / name)) for f in folders) if v is not None]
    return min(limits) if limits else None


def read_memory_cgroup(proc_cgroup: str, root: Path = Path("/sys/fs/cgroup")) -> MemoryCgroup | None:
    """The memory cgroup described by `proc_cgroup` (the text of /proc/<pid>/cgroup), read under
    `root` (where cgroupfs is mounted). None when no memory controller can be read."""
    v1_path = v2_path = None
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            v1_path = path
        elif hierarchy == "0" and controllers == "":
            v2_path = path
    if v1_path is not None:
        folders = [f for f in _candidates(root / "memory", v1_path) if (f / "memory.limit_in_bytes").exists()]
        if folders:
            own = folders[0]
            control = _read(own / "memory.oom_control")
            return MemoryCgroup(
                version=1,
                path=str(own),
                limit=_min_limit(folders, "memory.limit_in_bytes"),
                oom_kills=_keyed(control, "oom_kill"),
                failcnt=_int(_read(own / "memory.failcnt")),
            )
    if v2_path is not None:
        for base in (root, root / "unified"):
            folders = [f for f in _candidates(base, v2_path) if (f / "memory.events").exists()]
            if folders:
                own = folders[0]
                return MemoryCgroup(
                    version=2,
                    path=str(own),
                    limit=_min_limit(folders, "memory.max"),
                    oom_kills=_keyed(_read(own / "memory.events"), "oom_kill"),
                )
    return None


def current(pid: int | str = "self", root: Path = Path("/sys/fs/cgroup")) -> MemoryCgroup | None:
    """The memory cgroup of `pid` on this machine (None off Linux or without the controller)."""
    text = _read(Path(f"/proc/{pid}/cgroup"))
    return read_memory_cgroup(text, root) if text else None


def oom_killed(before: MemoryCgroup | None, after: MemoryCgroup | None) -> bool:
    """Did the cgroup kill something for lack of memory between the two readings?"""
    if after is None:
        return False
    if after.oom_kills is not None:
        return after.oom_kills > ((before.oom_kills or 0) if before is not None else 0)
    # Kernels before 4.13 have no oom_kill counter in v1: a limit that was hit is the best sign.
    if after.failcnt is not None and after.limit is not None:
        return after.failcnt > ((before.failcnt or 0) if before is not None else 0)
    return False


def human_bytes(n: int) -> str:
    """1073741824 -> '1 GiB', 134217728 -> '128 MiB' (the units `memory:` tags use)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value != int(value) else f"{int(value)} {unit}"
    return f"{n} bytes"
