"""The rooms of docs/architecture.md, kept true: imports flow one way, no cycles, shared constants
defined once, long modules say why. Reads the source (scripts/import_graph.py); runs nothing."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
assert _spec and _spec.loader
graph_mod = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = graph_mod
_spec.loader.exec_module(graph_mod)

#: Which rooms a room may import (prefixes under jupyter_ext). Anything else is a wrong-way import.
ALLOWED: dict[str, tuple[str, ...]] = {
    # The runner ships into pods: only itself and the dependency-free contract.
    "runner": ("runner", "contract"),
    # Backends never import the core (orchestrator, server, CLI, magics, store).
    "backends": ("backends", "runner", "contract", "errors", "models", "quantity", "reasons", "layout"),
    # The planner never reaches the backends or the server.
    "notebook": ("notebook", "contract", "errors", "models", "quantity"),
    "contract": (),
    "errors": ("contract",),
    "quantity": ("errors", "contract"),
}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles() -> None:
    found = graph_mod.cycles(graph_mod.edges())
    assert found == [], f"import cycles among jupyter_ext modules: {found}"


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_imports_flow_one_way(room: str) -> None:
    wrong = []
    for mod, targets in graph_mod.edges().items():
        if _room(mod) != room:
            continue
        for t in targets:
            if _room(t) not in ALLOWED[room] and t != "jupyter_ext":
                wrong.append(f"{mod} imports {t}")
    assert not wrong, "\n".join(wrong)


def test_long_modules_say_why() -> None:
    silent = [f"{mod} ({n} lines)" for mod, n, why in graph_mod.long_modules() if not why]
    assert not silent, f"modules over {graph_mod.LONG} lines without {graph_mod.WHY!r} in their docstring: {silent}"


def _assignments(name_re: str) -> list[str]:
    where = []
    for path in (ROOT / "jupyter_ext").rglob("*.py"):
        if "labextension" in path.parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets = [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and re.fullmatch(name_re, t.id):
                    where.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return where


def test_event_version_defined_once() -> None:
    assert _assignments(r"_?EVENT_VERSION") == ["jupyter_ext/contract.py:" + str(_line("EVENT_VERSION"))]


def test_terminal_statuses_defined_once() -> None:
    """One set of terminal statuses (contract.TERMINAL); no module retypes it as a literal."""
    assert _assignments(r"_?TERMINAL") == ["jupyter_ext/contract.py:" + str(_line("TERMINAL"))]
    retyped = []
    for path in (ROOT / "jupyter_ext").rglob("*.py"):
        if "labextension" in path.parts or path.name == "contract.py":
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            words = set(re.findall(r"""["'](succeeded|failed|cancelled)["']""", line))
            if len(words) == 3 and re.search(r"[{(\[]", line):
                retyped.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not retyped, "terminal statuses retyped (use contract.TERMINAL):\n" + "\n".join(retyped)


def _line(name: str) -> int:
    tree = ast.parse((ROOT / "jupyter_ext" / "contract.py").read_text())
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and target.id == name:
                return node.lineno
    raise AssertionError(f"contract.py defines no {name}")


def test_contract_is_a_leaf() -> None:
    tree = ast.parse((ROOT / "jupyter_ext" / "contract.py").read_text())
    imported = {
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    }
    assert imported <= {"__future__", "typing"}, imported


def test_lab_keys_on_reason_codes_not_english() -> None:
    """The Lab side never parses the server's English (it keys on `reason`)."""
    hits = []
    for path in (ROOT / "labextension" / "src").rglob("*.ts"):
        if "__tests__" in path.parts:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            # a regex tried on the text of a message (`/past its timeout/i.test(message)`, `pattern.test(probe)`)
            if re.search(r"\.test\(\s*(\w+\.)*(message|probe|detail|words|error|text)\b", line):
                hits.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not hits, "\n".join(hits)
