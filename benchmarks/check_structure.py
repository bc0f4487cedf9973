"""How easy jobpoll is to change: sizes, complexity, import cycles and private names reached
across modules, against the targets a newcomer's codebase should meet.

    .venv/bin/python benchmarks/check_structure.py [--root jobpoll] [--list]

Prints one table (figure, value, target, met) and exits 1 if a target is missed. `--list`
also prints every offender. Complexity is radon's cyclomatic complexity (`radon` is in the
`dev` extra); the rest is read from the syntax tree:

- an import cycle is one between jobpoll's own modules, counting every import that runs (at
  module level or inside a function: an import moved into a function only hides a cycle);
  imports under `if TYPE_CHECKING:` never run and are left out;
- a private name reached across modules is `obj._name` where `obj` is not `self` or `cls`
  and no class of the same module defines `_name` (as a method, a slot or `self._name = ...`),
  a `getattr`/`setattr` of a string starting with one underscore (or built from `"_" + ...`),
  or `from jobpoll._x import _name`; the few private attributes of aiohttp's objects that
  jobpoll reads (`THIRD_PARTY`, each with the reason) are counted apart.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

from radon.complexity import cc_visit

MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 60
MAX_COMPLEXITY = 12


def _modules(root: Path) -> dict[str, Path]:
    package = root.name
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    assert package in found, f"{root} is not a package"
    return found


def _lines(node: ast.AST) -> int:
    end = getattr(node, "end_lineno", None) or node.lineno  # type: ignore[attr-defined]
    return int(end - node.lineno + 1)  # type: ignore[attr-defined]


def _imports(module: str, tree: ast.AST, known: set[str]) -> Iterator[tuple[str, bool, int]]:
    """(imported jobpoll module, inside a function?, line) for each import of one of ours."""
    functions = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(node)
    }
    type_checking = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    package = module.rsplit(".", 1)[0] if module.count(".") else module
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: max(0, package.count(".") + 1 - (node.level - 1))]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            if (
                base in known
                and f"{base}.__init__" not in known
                and any(f"{base}.{alias.name}" in known for alias in node.names)
            ):
                names.remove(base)  # `from jobpoll import _errors`: the module, not the package
        if id(node) in type_checking:
            continue
        for name in names:
            if name in known and name != module:
                yield name, id(node) in functions, node.lineno


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _defined_in_classes(tree: ast.Module) -> set[str]:
    """The attribute names the module's own classes define: methods, slots, `self.x = ...`."""
    names: set[str] = set()
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        for node in ast.walk(cls):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.AnnAssign | ast.Assign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
                if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets):
                    value = node.value
                    names.update(
                        c.value
                        for c in ast.walk(value)
                        if value is not None
                        if isinstance(c, ast.Constant) and isinstance(c.value, str)
                    )
    return names


#: Private attributes of another library's objects that jobpoll reads, each with `getattr`
#: and a default (so a new release without them degrades, never breaks), and why: a separate
#: figure from jobpoll's own private names, which no module reaches in another's objects.
THIRD_PARTY = {
    "_loop": "aiohttp.ClientSession: its public `loop` is deprecated (a warning, an error here)",
    "_default_proxy": "aiohttp.ClientSession(proxy=...): no public way to read it back",
}


def _private_reaches(tree: ast.Module, known: set[str]) -> Iterator[tuple[int, str]]:
    own = {"self", "cls"}
    for node in tree.body:  # module-level names: the module's own private helpers
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            own.update(t.id for t in targets if isinstance(t, ast.Name))
    defined = _defined_in_classes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            if node.attr in defined:
                continue  # an object of this module's own classes
            if not (isinstance(node.value, ast.Name) and node.value.id in own):
                yield node.lineno, f"{ast.unparse(node.value)}.{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr", "delattr"}
            and len(node.args) >= 2
        ):
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                if _is_private(name.value) and name.value not in THIRD_PARTY:
                    yield node.lineno, f"{node.func.id}(..., {name.value!r})"
            elif isinstance(name, ast.BinOp) and "'_'" in ast.unparse(name):
                yield node.lineno, f"{node.func.id}(..., {ast.unparse(name)})"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jobpoll"):
            for alias in node.names:
                if _is_private(alias.name) and f"{node.module}.{alias.name}" not in known:
                    yield node.lineno, f"from {node.module} import {alias.name}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def measure(root: Path) -> tuple[list[tuple[str, object, object, bool]], dict[str, list[str]]]:
    modules = _modules(root)
    known = set(modules)
    total_lines = 0
    big_modules: list[str] = []
    classes: list[tuple[int, str]] = []
    long_functions: list[str] = []
    complex_functions: list[str] = []
    functions = 0
    at_least_10 = 0
    graph: dict[str, set[str]] = {name: set() for name in modules}
    hidden_imports: list[str] = []
    private: list[str] = []
    for name, path in modules.items():
        source = path.read_text()
        tree = ast.parse(source)
        lines = len(source.splitlines())
        total_lines += lines
        where = path.relative_to(root.parent)
        if lines > MAX_MODULE_LINES:
            big_modules.append(f"{where}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes.append((_lines(node), f"{where}:{node.lineno} {node.name}"))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions += 1
                if _lines(node) > MAX_FUNCTION_LINES:
                    long_functions.append(f"{where}:{node.lineno} {node.name}: {_lines(node)}")
        for item in cc_visit(source):
            if hasattr(item, "methods"):
                continue  # a class: radon lists its methods on their own too
            if item.complexity >= 10:
                at_least_10 += 1
            if item.complexity > MAX_COMPLEXITY:
                complex_functions.append(
                    f"{where}:{item.lineno} {item.fullname}: {item.complexity}"
                )
        for target, in_function, line in _imports(name, tree, known):
            graph[name].add(target)
            if in_function:
                hidden_imports.append(f"{where}:{line} imports {target} inside a function")
        private.extend(f"{where}:{line} {text}" for line, text in _private_reaches(tree, known))
    cycles = _cycles(graph)
    classes.sort(reverse=True)
    largest = classes[0] if classes else (0, "-")
    rows: list[tuple[str, object, object, bool]] = [
        ("library lines", total_lines, "fewer than 8,223", total_lines < 8223),
        ("modules over 500 lines", len(big_modules), 0, not big_modules),
        ("largest class (lines)", f"{largest[0]} ({largest[1]})", "<= 300", largest[0] <= 300),
        ("functions over 60 lines", len(long_functions), 0, not long_functions),
        ("functions over complexity 12", len(complex_functions), 0, not complex_functions),
        ("functions with complexity >= 10", f"{at_least_10} of {functions}", "-", True),
        ("import cycles", len(cycles), 0, not cycles),
        # Informational: a lazy import (a command's start-up time) is fine unless it closes
        # a cycle, which the row above counts.
        ("imports inside functions", len(hidden_imports), "-", True),
        ("private names reached across modules", len(private), 0, not private),
        ("another library's private names read", len(THIRD_PARTY), "-", True),
    ]
    offenders = {
        "modules over 500 lines": big_modules,
        "classes over 300 lines": [f"{w}: {n}" for n, w in classes if n > MAX_CLASS_LINES],
        "functions over 60 lines": long_functions,
        "functions over complexity 12": complex_functions,
        "import cycles": [" <-> ".join(c) for c in cycles],
        "imports inside functions": hidden_imports,
        "private names reached across modules": private,
        "another library's private names read": [f"{k}: {v}" for k, v in THIRD_PARTY.items()],
    }
    return rows, offenders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).parent.parent / "jobpoll")
    parser.add_argument("--list", action="store_true", help="print every offender too")
    args = parser.parse_args()
    rows, offenders = measure(args.root.resolve())
    width = max(len(row[0]) for row in rows)
    for figure, value, target, met in rows:
        print(
            f"{figure:<{width}}  {value!s:>12}  target {target!s:<16} {'met' if met else 'MISSED'}"
        )
    if args.list:
        for title, items in offenders.items():
            if items:
                print(f"\n{title}:")
                for item in items:
                    print(f"  {item}")
    missed = [row[0] for row in rows if not row[3]]
    print(f"\nverdict: {'every target met' if not missed else 'missed: ' + ', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
