"""Variables handed from step to step: which ones (static analysis) and how (in the kernel).

Each step runs in a fresh kernel, so a name one step defines and a later step uses has to
travel. The planner finds those names with `ast` + `symtable` (so scoping is CPython's own:
a name read inside a function body is a global read, a comprehension variable is not):

- a step *needs* a name it reads before it has surely bound it itself (a binding inside an
  ``if`` without an ``else``, a loop or a ``try`` is not sure; one in a ``with`` is);
- its *inputs* are the needed names that an earlier step it (transitively) runs after
  defines; where several such steps define one, the latest in the plan's order wins;
- names defined by the parameters, ``imports`` and ``functions`` cells are never handed
  off: those cells run at the start of every step. IPython's own names (``get_ipython``,
  ``display``, ``In``, ``_``...) are never handed off either. A builtin is handed off only
  when an earlier step rebinds it (``input = ...``), as running the notebook top to bottom would;
- a producing step's *outputs* are the names later steps load from it.

IPython syntax is turned into Python first (``TransformerManager().transform_cell``), and the
code inside ``%time``, ``%%time``, ``%%capture`` (and, read-only, ``%timeit``) is analysed
too. A cell that still does not parse is an error naming the cell.

In the kernel, the step's notebook gets two internal cells (see slice.py) whose code calls
`load_variables` / `save_variables`: that side, and the environment contract with the server, is
handoff_io.py (kept apart so job kernels import only it, not this analysis).
"""

from __future__ import annotations

import ast
import re
import symtable
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Provided by every IPython kernel; never handed off.
_KERNEL_NAMES = frozenset(
    {"get_ipython", "display", "In", "Out", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii", "_ih", "_oh", "_dh"}
)
_KERNEL_PATTERN = re.compile(r"_i?[0-9]+")
# Magics whose argument is Python run in the user's namespace.
_CODE_MAGICS = {"time": True, "capture": True, "timeit": False}  # magic -> its bindings persist


def _cell(index: int) -> str:
    """A cell as a person names it: Lab's number, 1-based over all cells (indices stay 0-based)."""
    return f"cell {index + 1}"


class CellSyntaxError(Exception):
    """A cell that is not Python even after IPython's transforms (the planner reports it)."""

    def __init__(self, cell: int, detail: str) -> None:
        super().__init__(f"{_cell(cell)}: {detail}")
        self.cell = cell
        self.detail = detail


# -- analysis of one cell ----------------------------------------------------------------------------------------
@dataclass
class CellNames:
    """Module-level names of one cell: read before surely bound, bound at all, surely bound."""

    needs: set[str] = field(default_factory=set)
    defines: set[str] = field(default_factory=set)
    definite: set[str] = field(default_factory=set)


def is_kernel_name(name: str) -> bool:
    """Names every IPython kernel defines by itself (output history and friends)."""
    return name in _KERNEL_NAMES or bool(_KERNEL_PATTERN.fullmatch(name))


def to_python(source: str) -> str:
    """The cell's code with IPython syntax (%magic, !cmd, x?) turned into plain Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def scan_cell(source: str, cell: int) -> CellNames:
    """Analyse one code cell. Raises CellSyntaxError if it is not (IPython) Python."""
    result = CellNames()
    try:
        tree = ast.parse(to_python(source))
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        raise CellSyntaxError(cell, f"{where}{exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - IPython's transformers can fail in odd ways on odd input
        raise CellSyntaxError(cell, f"{type(exc).__name__}: {exc}") from None
    _block(tree.body, result.definite, result, persist=True)
    return result


def _block(stmts: Sequence[ast.stmt], definite: set[str], out: CellNames, persist: bool) -> None:
    """Walk statements in order, growing `definite` (names surely bound so far) in place."""
    for stmt in stmts:
        if isinstance(stmt, ast.If):
            _expr(stmt.test, definite, out, persist)
            body, orelse = set(definite), set(definite)
            _block(stmt.body, body, out, persist)
            _block(stmt.orelse, orelse, out, persist)
            definite |= body & orelse
        elif isinstance(stmt, ast.For | ast.AsyncFor):
            _expr(stmt.iter, definite, out, persist)
            inner = set(definite)
            _target(stmt.target, inner, out, persist)
            _block(stmt.body, inner, out, persist)
            _block(stmt.orelse, set(definite), out, persist)
        elif isinstance(stmt, ast.While):
            _expr(stmt.test, definite, out, persist)
            _block(stmt.body, set(definite), out, persist)
            _block(stmt.orelse, set(definite), out, persist)
        elif isinstance(stmt, ast.With | ast.AsyncWith):
            for item in stmt.items:
                _expr(item.context_expr, definite, out, persist)
                if item.optional_vars is not None:
                    _target(item.optional_vars, definite, out, persist)
            _block(stmt.body, definite, out, persist)
        elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":  # TryStar: Python 3.11+
            _try(stmt, definite, out, persist)
        elif isinstance(stmt, ast.Match):
            _expr(stmt.subject, definite, out, persist)
            for case in stmt.cases:
                inner = set(definite)
                _pattern(case.pattern, inner, out, persist)
                if case.guard is not None:
                    _expr(case.guard, inner, out, persist)
                _block(case.body, inner, out, persist)
        else:
            for magic, line, code in _code_magics(stmt):
                _magic(magic, line, code, definite, out, persist)
            reads, writes = _scan(stmt)
            _use(reads, definite, out)
            _bind(writes, definite, out, persist)


def _try(stmt: Any, definite: set[str], out: CellNames, persist: bool) -> None:
    """A name is surely bound after `try` if the body (+ else) and every handler bind it."""
    body = set(definite)
    _block(stmt.body, body, out, persist)
    _block(stmt.orelse, body, out, persist)
    surely = body
    for handler in stmt.handlers:
        inner = set(definite)
        if handler.type is not None:
            _expr(handler.type, inner, out, persist)
        if handler.name:
            _bind({handler.name}, inner, out, persist)
        _block(handler.body, inner, out, persist)
        surely &= inner
    definite |= surely
    _block(stmt.finalbody, definite, out, persist)


def _use(reads: Iterable[str], definite: set[str], out: CellNames) -> None:
    out.needs.update(n for n in reads if n not in definite)


def _bind(names: Iterable[str], definite: set[str], out: CellNames, persist: bool) -> None:
    names = set(names)
    definite |= names
    if persist:
        out.defines |= names


def _expr(node: ast.expr, definite: set[str], out: CellNames, persist: bool) -> None:
    reads, writes = _scan(ast.Expr(value=node))  # walrus (`if (n := ...)`) binds
    _use(reads, definite, out)
    _bind(writes, definite, out, persist)


def _target(node: ast.expr, definite: set[str], out: CellNames, persist: bool) -> None:
    reads, writes = _scan(ast.Assign(targets=[node], value=ast.Constant(None), lineno=1))
    _use(reads, definite, out)
    _bind(writes, definite, out, persist)


def _pattern(node: ast.pattern, definite: set[str], out: CellNames, persist: bool) -> None:
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.MatchAs | ast.MatchStar) and sub.name:
            names.add(sub.name)
        elif isinstance(sub, ast.MatchMapping) and sub.rest:
            names.add(sub.rest)
        elif isinstance(sub, ast.MatchValue | ast.MatchClass):
            value = sub.value if isinstance(sub, ast.MatchValue) else sub.cls
            _expr(value, definite, out, persist)
    _bind(names, definite, out, persist)


def _magic(magic: str, line: str, body: str, definite: set[str], out: CellNames, persist: bool) -> None:
    if magic == "capture":
        words = [w for w in line.split() if not w.startswith("-")]
        if words and words[0].isidentifier():
            _bind({words[0]}, definite, out, persist)
    try:
        tree = ast.parse(to_python(body))
    except Exception:  # noqa: BLE001 - the magic reports its own syntax errors when it runs
        return
    keeps = _CODE_MAGICS[magic]
    _block(tree.body, definite if keeps else set(definite), out, persist and keeps)


def _code_magics(stmt: ast.stmt) -> list[tuple[str, str, str]]:
    """(magic, line, code) for each %time/%%time/%%capture/%timeit call in the statement."""
    found = []
    for node in ast.walk(stmt):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if not (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "get_ipython"):
            continue
        args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if len(args) != len(node.args) or not args or args[0] not in _CODE_MAGICS:
            continue
        if node.func.attr == "run_line_magic" and len(args) == 2:
            found.append((args[0], "", args[1]))
        elif node.func.attr == "run_cell_magic" and len(args) == 3:
            found.append((args[0], args[1], args[2]))
    return found


def _scan(node: ast.stmt) -> tuple[set[str], set[str]]:
    """Global names one statement reads and binds, scoped by CPython's symtable."""
    reads: set[str] = set()
    writes: set[str] = set()
    try:
        table = symtable.symtable(ast.unparse(node), "<cell>", "exec")
    except (SyntaxError, ValueError, RecursionError):
        return _scan_naive(node)
    for sym in table.get_symbols():
        if sym.is_referenced():
            reads.add(sym.get_name())
        if sym.is_assigned() or sym.is_imported() or sym.is_namespace():
            writes.add(sym.get_name())
    for child in table.get_children():
        _scan_nested(child, reads, writes)
    reads |= _augmented_reads(node)
    return reads, writes


def _scan_nested(table: symtable.SymbolTable, reads: set[str], writes: set[str]) -> None:
    for sym in table.get_symbols():
        if sym.is_global() and sym.is_referenced():
            reads.add(sym.get_name())
        if sym.is_declared_global() and sym.is_assigned():
            writes.add(sym.get_name())
    for child in table.get_children():
        _scan_nested(child, reads, writes)


def _augmented_reads(node: ast.AST) -> set[str]:
    """`x += 1` reads x, which symtable does not count as a reference."""
    found: set[str] = set()

    def visit(n: ast.AST, declared: set[str] | None) -> None:
        for child in ast.iter_child_nodes(n):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = {g for sub in ast.walk(child) if isinstance(sub, ast.Global) for g in sub.names}
                visit(child, inner)
            elif isinstance(child, ast.ClassDef):
                visit(child, set())
            else:
                if isinstance(child, ast.AugAssign) and isinstance(child.target, ast.Name):
                    if declared is None or child.target.id in declared:
                        found.add(child.target.id)
                visit(child, declared)

    visit(ast.Module(body=[node], type_ignores=[]) if isinstance(node, ast.stmt) else node, None)
    return found


def _scan_naive(node: ast.AST) -> tuple[set[str], set[str]]:
    reads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    writes = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return reads, writes


# -- analysis of a plan ------------------------------------------------------------------------------------------
@dataclass
class StepCode:
    """What the analysis needs to know about one step (plan.py fills it from PlannedStep)."""

    name: str
    cells: list[int]
    after: list[str]


@dataclass
class StepFlow:
    """The analysis result for one step."""

    inputs: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # input -> the step it is loaded from
    outputs: list[str] = field(default_factory=list)
    origins: dict[str, int] = field(default_factory=dict)  # output -> last cell of this step binding it


@dataclass
class Note:
    """A problem (`error`) or a warning about the flow of variables, located by cell and step."""

    message: str
    cell: int | None
    step: str | None
    error: bool = False


def analyze_steps(
    steps: Sequence[StepCode], sources: Mapping[int, str], shared_cells: Iterable[int]
) -> tuple[dict[str, StepFlow], list[Note]]:
    """Inputs and outputs of each step. `steps` must be in topological (plan) order."""
    notes: list[Note] = []
    names: dict[int, CellNames] = {}
    for index in sorted(set(shared_cells) | {c for s in steps for c in s.cells}):
        try:
            names[index] = scan_cell(sources.get(index, ""), index)
        except CellSyntaxError as exc:
            notes.append(
                Note(
                    f"{_cell(index)}: cannot be analysed for hand-off: {exc.detail}", cell=index, step=None, error=True
                )
            )
    if notes:
        return {}, notes
    shared: dict[str, int] = {}
    for index in sorted(shared_cells):
        for name in names[index].defines:
            shared.setdefault(name, index)

    needs: dict[str, dict[str, int]] = {}  # step -> name -> first cell needing it
    defines: dict[str, dict[str, int]] = {}  # step -> name -> last cell binding it
    for step in steps:
        surely: set[str] = set()
        need: dict[str, int] = {}
        bound: dict[str, int] = {}
        for index in step.cells:
            found = names[index]
            for name in sorted(found.needs - surely):
                if not is_kernel_name(name):
                    need.setdefault(name, index)
            surely |= found.definite
            for name in found.defines:
                bound[name] = index
        needs[step.name] = need
        defines[step.name] = bound

    position = {s.name: i for i, s in enumerate(steps)}
    parents = {s.name: s.after for s in steps}
    flows = {s.name: StepFlow() for s in steps}
    for step in steps:
        ancestors = _ancestors(step.name, parents)
        flow = flows[step.name]
        for name, cell in sorted(needs[step.name].items()):
            if name in shared:
                _warn_shadowed(name, cell, step.name, shared[name], ancestors, defines, notes)
                continue
            producers = [p for p in ancestors if name in defines[p]]
            if producers:
                producer = max(producers, key=position.__getitem__)
                flow.inputs.append(name)
                flow.sources[name] = producer
                flows[producer].origins[name] = defines[producer][name]
                continue
            elsewhere = [s.name for s in steps if s.name != step.name and name in defines[s.name]]
            if elsewhere:
                other = elsewhere[0]
                notes.append(
                    Note(
                        f"{_cell(cell)}: step {step.name!r} uses {name!r}, which step {other!r} defines, but "
                        f"{step.name!r} does not run after {other!r}, so {name!r} will not be handed over; "
                        f"add the tag 'after:{other}' to a cell of {step.name!r} if it needs that value",
                        cell=cell,
                        step=step.name,
                    )
                )
    for flow in flows.values():
        flow.outputs = sorted(flow.origins)
        flow.origins = {k: flow.origins[k] for k in flow.outputs}
    return flows, notes


def _warn_shadowed(
    name: str,
    cell: int,
    step: str,
    shared_cell: int,
    ancestors: set[str],
    defines: Mapping[str, Mapping[str, int]],
    notes: list[Note],
) -> None:
    for ancestor in sorted(ancestors):
        if name in defines[ancestor]:
            notes.append(
                Note(
                    f"{_cell(cell)}: step {step!r} uses {name!r}, which step {ancestor!r} reassigns "
                    f"({_cell(defines[ancestor][name])}), but {name!r} is also defined in {_cell(shared_cell)}, which "
                    f"runs at the start of every step, so {step!r} sees the value from {_cell(shared_cell)}",
                    cell=cell,
                    step=step,
                )
            )
            return


def _ancestors(name: str, parents: Mapping[str, Sequence[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(parents.get(name, ()))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(parents.get(current, ()))
    seen.discard(name)
    return seen
