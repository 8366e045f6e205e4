"""The package's structure: imports point one way, no module reaches into another's private
names, and the things the pipeline does once are written once."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"augrl": ROOT / "augrl", "augrl.envs": ROOT / "envs", "augrl.baselines": ROOT / "baselines"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _imported(module: str, path: Path, node: ast.AST) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) of one import statement."""
    if isinstance(node, ast.Import):
        return [(a.name, []) for a in node.names]
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if node.level:
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [(target, [a.name for a in node.names])]


def _graph() -> dict[str, set[str]]:
    """Module -> augrl modules it imports, at any depth of the file (function-level imports
    too: a cycle through a lazy import is still a cycle), parents of a submodule included."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, names in _imported(module, path, node):
                for candidate in [target] + [f"{target}.{n}" for n in names]:
                    parts = candidate.split(".")
                    for k in range(2, len(parts) + 1):  # the package `augrl` itself is left out
                        dep = ".".join(parts[:k])
                        if dep in modules and dep != module and not module.startswith(dep + "."):
                            graph[module].add(dep)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert "augrl.pipelines" in graph["augrl.methods"] and "augrl.kd.distiller" in graph["augrl.pipelines"]
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                offenders += [f"{module}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


def _calls(name: str) -> list[str]:
    """Where the package calls ``name(...)`` (a plain or dotted name)."""
    found = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if called == name:
                    found.append(f"{module}:{node.lineno}")
    return found


def test_one_place_builds_a_distiller_and_one_builds_a_record():
    assert _calls("Distiller") == []  # only Distiller.from_train_config constructs one (cls(...))
    assert [c.split(":")[0] for c in _calls("from_train_config")] == ["augrl.pipelines", "augrl.training"]
    # every result record starts in methods.build_record; provenance() is called by it (and by the
    # tune driver's trial lines, which aggregate bench records)
    assert sorted(c.split(":")[0] for c in _calls("provenance")) == ["augrl.methods", "augrl.tune"]
