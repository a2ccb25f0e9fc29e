"""Import graph of the jupyter_ext package: cycles, and lines per module.

    python scripts/import_graph.py            # cycles among jupyter_ext modules (any import, even in a function)
    python scripts/import_graph.py --top      # only imports made when the module is loaded
    python scripts/import_graph.py --lines    # modules over 500 lines and whether their top says why

Reads the source with `ast`; imports nothing of the package. tests/unit/test_architecture.py keeps
the answers true (no cycle, every long module explains itself)."""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "jupyter_ext"
LONG = 500
#: The words a long module's docstring carries to say why it is long.
WHY = "Why this module is long:"


def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(PKG.rglob("*.py")):
        if "labextension" in path.parts:
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def edges(top_only: bool = False) -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        nodes = tree.body if top_only else list(ast.walk(tree))
        if top_only:  # imports at module level, including those under `if` / `try` (not TYPE_CHECKING)
            flat: list[ast.AST] = []
            stack = list(nodes)
            while stack:
                n = stack.pop()
                if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                    continue
                flat.append(n)
                if isinstance(n, (ast.If, ast.Try)):
                    stack.extend(ast.iter_child_nodes(n))
            nodes = flat
        elif True:  # skip TYPE_CHECKING blocks everywhere
            skip = set()
            for n in ast.walk(tree):
                if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                    skip.update(id(x) for x in ast.walk(n))
            nodes = [n for n in nodes if id(n) not in skip]
        for n in nodes:
            targets: list[str] = []
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                if n.level:
                    anchor = base[: len(base) - (n.level - 1)]
                    prefix = ".".join(anchor + ([n.module] if n.module else []))
                else:
                    prefix = n.module or ""
                targets = [f"{prefix}.{a.name}" for a in n.names] + [prefix]
            for t in targets:
                r = _resolve(t, mods)
                if r and r != mod and not mod.startswith(r + "."):
                    graph[mod].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def long_modules() -> list[tuple[str, int, bool]]:
    rows = []
    for mod, path in modules().items():
        text = path.read_text()
        n = text.count("\n")
        if n > LONG:
            doc = ast.get_docstring(ast.parse(text)) or ""
            rows.append((mod, n, WHY in doc))
    return sorted(rows, key=lambda r: -r[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", action="store_true")
    ap.add_argument("--lines", action="store_true")
    args = ap.parse_args()
    if args.lines:
        for mod, n, why in long_modules():
            print(f"{n:6d}  {mod}  {'(says why)' if why else '(no reason at its top)'}")
        return 0
    found = cycles(edges(args.top))
    for comp in found:
        print("cycle:", " <-> ".join(comp))
    print(f"{len(found)} import cycle(s) among {len(modules())} modules ({'module level' if args.top else 'any import'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
