"""`python -m jupyter_ext.runner`: run one step attempt (main.py), or with `--standby FOLDER` wait
warm for one (standby.py; with `--listen TAG --idle S` after it, the command line's kept-warm
runner). Here, not in main.py, so that standby.py can use main.py without a cycle."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from .lazy_imports import defer_iri_grammar

    defer_iri_grammar()  # 1 s of every runner's start (lazy_imports.py)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--standby"]:
        from .standby import standby

        return standby(argv[1] if len(argv) > 1 else ".", argv[2:])
    from .main import parse_args, run

    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
