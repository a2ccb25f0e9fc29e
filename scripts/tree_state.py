"""Did the tests leave the working tree as they found it? (`make test`, `make check-clean`)

    python scripts/tree_state.py save FILE    # what `git status` shows now, each file's content hashed
    python scripts/tree_state.py check FILE   # exit 1, naming the files, if the tree differs from FILE;
                                              # without FILE: if `git status --porcelain` shows anything

In a fresh clone (CI) the snapshot is empty, so the check is `git status --porcelain` being empty.
A developer's own uncommitted edits are in the snapshot too: only what changed while the tests ran
is reported. A file the tests write belongs in .gitignore (build outputs) or nowhere (screenshots
are written only by `make screenshots`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def state() -> dict[str, str]:
    """Each path `git status` lists (untracked files one by one) -> its status and content hash."""
    out = subprocess.run(
        ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    fields = out.split("\0")
    entries: dict[str, str] = {}
    i = 0
    while i < len(fields):
        field = fields[i]
        i += 1
        if not field:
            continue
        code, path = field[:2], field[3:]
        if code[0] in "RC":  # a rename or copy: the next field is the original path
            i += 1
        file = ROOT / path
        digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16] if file.is_file() else "-"
        entries[path] = f"{code} {digest}"
    return entries


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("save", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    command, snapshot = argv[0], Path(argv[1])
    now = state()
    if command == "save":
        snapshot.write_text(json.dumps(now, indent=1, sort_keys=True))
        return 0
    before: dict[str, str] = json.loads(snapshot.read_text()) if snapshot.exists() else {}
    changed = sorted(p for p in now.keys() | before.keys() if now.get(p) != before.get(p))
    if not changed:
        print(f"check-clean: the working tree is as it was{' (clean)' if not now else ''}")
        return 0
    what = "the tests changed the working tree" if snapshot.exists() else "the working tree is not clean"
    print(f"check-clean: {what} (a build output belongs in .gitignore):", file=sys.stderr)
    for path in changed[:40]:
        print(f"  {before.get(path, 'clean'):>20} -> {now.get(path, 'clean'):<20} {path}", file=sys.stderr)
    if len(changed) > 40:
        print(f"  ... and {len(changed) - 40} more (git status)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
