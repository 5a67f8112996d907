"""Packages import downward only: each module may import modules of a lower layer (or its own package), and
no modules import each other in a circle, inside one package either."""

import ast
from pathlib import Path

import ticketlab

# Lower numbers sit lower. A module may import its own package's modules and anything of a lower layer.
LAYERS = {
    "errors": 0, "seeds": 0.5, "files": 0.5, "matching": 0.5, "settings": 0.5, "config": 1, "data": 2, "models": 2,
    "masks": 3, "existence": 3, "identity": 3, "store": 3, "sparse": 3, "pruning": 4, "training": 4, "doctor": 4.5, "configure": 5,
    "jobs": 6, "executors": 7, "export": 7, "report": 7, "experiments": 8, "cli": 9, "__init__": 9, "__main__": 9,
}
SRC = Path(ticketlab.__file__).parent


def _top(module_path: Path) -> str:
    rel = module_path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported(module_path: Path, node: ast.ImportFrom) -> str | None:
    """The ticketlab top-level module a `from ... import` names, or None for anything outside ticketlab."""
    if node.level == 0:
        parts = (node.module or "").split(".")
        return parts[1] if parts[0] == "ticketlab" and len(parts) > 1 else None
    package = module_path.relative_to(SRC).parent.parts[: max(0, len(module_path.relative_to(SRC).parts) - node.level)]
    names = list(package) + (node.module.split(".") if node.module else [])
    if names:
        return names[0]
    return None  # `from . import x` in ticketlab/__init__.py: checked through the names below


def test_no_module_imports_upward():
    upward = []
    for path in SRC.rglob("*.py"):
        mine = _top(path)
        assert mine in LAYERS, f"{path} has no layer in this test: add it"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _imported(path, node)
                if target is None and node.level == 1 and mine == "__init__":
                    continue
                if target is not None and target != mine and LAYERS.get(target, 99) >= LAYERS[mine]:
                    upward.append(f"{path.relative_to(SRC)} imports {target}")
    assert upward == []


# ---- circles: the module graph of ticketlab, every `import` and `from ... import` of a ticketlab module -----
# Imports inside functions count too: a module that imports, inside a function, a module that imports it at
# the top has only hidden the circle from Python's import machinery (the two still cannot be read, tested or
# moved apart). Imports under `if TYPE_CHECKING:` would not count (annotations only, never run); none exist.


def _module_name(path: Path) -> str:
    parts = ["ticketlab", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)."""
    out = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None) if isinstance(node, ast.If) else None
        if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING":
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def imports_of(path: Path) -> set[str]:
    """The ticketlab modules (packages by their __init__) that the module at `path` imports."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")  # level 1: this package, 2: its parent, ...
                parts = parts[: len(parts) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                base = ".".join(parts)
            else:
                base = node.module or ""
            for alias in node.names:  # `from . import x` names a module x; `from .x import y` the module x
                name = f"{base}.{alias.name}"
                out.add(name if name in MODULES else base)
    return {m for m in out if m in MODULES and m != me}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_circle_finder_finds_a_circle_and_only_circles():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}, "b.p": {"b.q"}, "b.q": set()}
    assert circles(graph) == [["a.x", "a.y", "a.z"]]
    assert circles({"a.x": {"a.y"}, "a.y": set()}) == []


def test_relative_imports_resolve_to_the_modules_they_name():
    assert "ticketlab.matching" in imports_of(SRC / "report" / "aggregate.py")  # from ..matching import ...
    assert "ticketlab.store" in imports_of(SRC / "report" / "aggregate.py")  # from .. import store (a package)
    html = imports_of(SRC / "report" / "html.py")
    assert {"ticketlab.report.aggregate", "ticketlab.report.across_experiments"} <= html  # from .aggregate, from .
    assert "ticketlab.report" not in html  # `from . import figures` names the module, not the package


def test_no_modules_import_each_other_in_a_circle():
    """Inside one package too (a circle across packages needs an upward import, refused above)."""
    found = circles({name: imports_of(path) for name, path in MODULES.items()})
    assert found == [], "modules that import each other: " + "; ".join(" <-> ".join(c) for c in found)
