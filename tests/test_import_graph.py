"""The project's import graph, read from the source with `ast`: no module imports itself back through others
(imports inside functions count, so a cycle cannot hide in a function body; imports under ``if TYPE_CHECKING:``
never run and do not), and `export/` imports from `distill/` only the modules listed, each with why.
Dynamic imports (``importlib.import_module``) are not seen."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("redaes_lite", "distill", "export")

# What export/ may import from distill/, each with why; anything else is a training module export does not need.
EXPORT_MAY_IMPORT = {
    "distill": "the package itself, loaded with any of its modules (its __init__ imports nothing)",
    "distill.student": "rebuilds a trained student from its checkpoint (and a fresh one to benchmark) to trace it",
    "distill.splits": "the committed train/validation split: parity and calibration photos come from validation",
    "distill.teachers": "the package of distill.teachers.mos, loaded with it",
    "distill.teachers.mos": "read_mos, the one reader of BIQ2021's labels, for the benchmark's utility probe",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST):
    """Every node, function bodies included, except the bodies of ``if TYPE_CHECKING:`` (never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports anywhere in its file; ``from pkg import sub`` counts as importing pkg.sub."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            # `import a.b.c` loads a, a.b and a.b.c; a cycle through a package __init__ is a cycle too
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in known and prefix != name:
                    out.add(prefix)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph = {name: _imports(name, path, known) for name, path in mods.items()}
    # A package importing its own submodule, or a submodule its parent package, is how Python packages work:
    # importing pkg.sub runs pkg/__init__ first, and pkg/__init__ re-exporting from pkg.sub is no cycle of code.
    for name, deps in graph.items():
        graph[name] = {d for d in deps if not d.startswith(name + ".") and not name.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_imports_inside_functions_relative_and_of_submodules_count(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    path = pkg / "a.py"
    path.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
        "def f():\n    from . import b\n    from .sub import name\n"
    )
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.sub"}
    assert _imports("pkg.a", path, known) == {"pkg", "pkg.b", "pkg.sub"}


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_reports_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_export_imports_from_distill_only_what_it_needs():
    graph = _graph()
    extra = {
        f"{mod} -> {dep}"
        for mod, deps in graph.items()
        if mod.split(".")[0] == "export"
        for dep in deps
        if dep.split(".")[0] == "distill" and dep not in EXPORT_MAY_IMPORT
    }
    assert not extra, "export imports training modules it does not need: " + ", ".join(sorted(extra))
