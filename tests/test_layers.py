"""The core imports one way: down the layers listed in ``lmeval/__init__.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import lmeval

PACKAGE = Path(lmeval.__file__).parent


def documented_layers() -> dict[str, int]:
    """Module name -> layer number, from the block in the package docstring."""
    layers: dict[str, int] = {}
    for match in re.finditer(r"^\s*(\d+)\s+([\w ]+?)(?:\s{2,}.*)?$", lmeval.__doc__, re.M):
        for name in match.group(2).split():
            layers[name] = int(match.group(1))
    return layers


def imports_of(path: Path) -> set[str]:
    """The lmeval modules ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "lmeval":
                found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "lmeval":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
    found.discard(path.stem)
    return found


def graph() -> dict[str, set[str]]:
    return {path.stem: imports_of(path) for path in sorted(PACKAGE.glob("*.py"))}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_there_is_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_is_in_a_layer():
    layers = documented_layers()
    assert set(graph()) == set(layers), "modules and the documented layers differ"


def test_modules_import_only_from_lower_layers():
    layers = documented_layers()
    upward = [
        f"{module} (layer {layers[module]}) imports {dep} (layer {layers[dep]})"
        for module, deps in graph().items()
        for dep in deps
        if layers[dep] >= layers[module]
    ]
    assert not upward, "; ".join(upward)


def test_the_cycle_finder_finds_a_cycle_and_a_lazy_import(tmp_path):
    """The checks above can fail: a lazy import back up is seen, a cycle is named."""
    module = tmp_path / "corpus.py"
    module.write_text("def f():\n    from .evaluate import compare\n", encoding="utf-8")
    assert imports_of(module) == {"evaluate"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
