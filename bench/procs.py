"""Process facts the bench scripts share, read from /proc (no import of jupyter_ext: some scripts also
measure older versions of the package, put first on PYTHONPATH, for a before/after)."""

from __future__ import annotations

from pathlib import Path


def rss_by_pid(pid: int) -> dict[int, int]:
    """Resident bytes of `pid` and of each of its descendants, by pid (those gone meanwhile left out)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        children.setdefault(int(text[text.rindex(")") + 2 :].split()[1]), []).append(int(stat.parent.name))
    out: dict[int, int] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[p] = int(line.split()[1]) * 1024
        except OSError:
            continue
    return out


def rss_tree(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants together."""
    return sum(rss_by_pid(pid).values())
