"""The engine's modules import each other in one direction only: a circle (``fanout`` and
``batching`` once reached into each other, and batch cancelling into ``api``) means two modules
that cannot be understood, tested or replaced apart. Imports inside functions and under
``TYPE_CHECKING`` count too: they are circles all the same, only hidden."""

from __future__ import annotations

import ast
from pathlib import Path

import stepline.engine

ENGINE = Path(stepline.engine.__file__).parent


def engine_imports() -> dict[str, set[str]]:
    """Each engine module's imports of other engine modules, by module name."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ENGINE.glob("*.py")):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            if node.module == "stepline.engine":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("stepline.engine."):
                found.add(node.module.removeprefix("stepline.engine."))
        graph[path.stem] = found - {path.stem}
    return graph


def circle_through(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph``, as the modules along it, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            circle = visit(imported, [*path, module])
            if circle is not None:
                return circle
        done.add(module)
        return None

    for module in sorted(graph):
        circle = visit(module, [])
        if circle is not None:
            return circle
    return None


def test_the_engine_has_no_import_circle() -> None:
    graph = engine_imports()

    assert {"fanout", "batching", "executors", "runner", "api"} <= set(graph)
    assert circle_through(graph) is None, " -> ".join(circle_through(graph) or [])


def test_a_circle_is_found_when_there_is_one() -> None:
    graph = {"api": {"runner"}, "runner": {"fanout"}, "fanout": {"batching"}, "batching": {"api"}}

    assert circle_through(graph) == ["api", "runner", "fanout", "batching", "api"]
    assert circle_through({"a": {"b"}, "b": set()}) is None
