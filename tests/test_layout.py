"""The package's layout: every dependency points one way (no import cycle, imports inside
functions included) and no module passes 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trafficsiam"
MAX_LINES = 600


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports, anywhere in it (TYPE_CHECKING aside)."""
    found: set[str] = set()
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            # `from pkg import mod` imports the module; `from pkg import name` runs pkg's
            # __init__, a dependency on the package itself
            names = subs + ([base] if any(s not in modules for s in subs) else [])
        else:
            continue
        found.update(n for n in names if n in modules and n != me)
    return found


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module(p) for p in paths}
    return {_module(p): _imports(p, modules) for p in paths}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_package_itself_is_a_node():
    # `from trafficsiam import __version__` in a module the library imports was a cycle
    # through the package's lazy attributes that the graph left out
    assert "trafficsiam.library" in _graph()["trafficsiam"]


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_contract_imports_nothing_and_decide_only_the_contract():
    assert _graph()["trafficsiam.contract"] == set()
    assert _graph()["trafficsiam.decide"] == {"trafficsiam.contract"}


def test_no_module_over_600_lines():
    long = {p.name: n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long
