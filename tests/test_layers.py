"""Packages import downward only: each module may import modules of a lower layer (or its own package)."""

import ast
from pathlib import Path

import ticketlab

# Lower numbers sit lower. A module may import its own package's modules and anything of a lower layer.
LAYERS = {
    "errors": 0, "seeds": 0.5, "files": 0.5, "config": 1, "data": 2, "models": 2, "masks": 3, "identity": 3, "store": 3,
    "sparse": 3, "pruning": 4, "training": 4, "doctor": 4.5, "configure": 5, "jobs": 6, "executors": 7, "export": 7,
    "report": 7, "experiments": 8, "cli": 9, "__init__": 9, "__main__": 9,
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
