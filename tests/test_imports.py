"""The package's import structure: no cycle among its modules, and each layer imports only the layers below it.

Every module of the edgecxr under test (the installed package in the runtime tier) is parsed with
``ast``; every import counts, at module level or inside a function, under ``if TYPE_CHECKING`` too.
The layers, as the folders say: ``edgecxr.core`` imports only itself; ``edgecxr.evaluation`` the
core; ``edgecxr.clinic`` the core; its ways in (``clinic.dicomnet``, ``clinic.web``) the clinic's
shared modules, never each other; the top (``edgecxr``, ``edgecxr.cli``) anything.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import edgecxr

PACKAGE = Path(edgecxr.__file__).resolve().parent

# layer -> the layers its modules must never import (a layer is the longest of these prefixes a module starts with)
FORBIDDEN = {
    "edgecxr.core": ("edgecxr.evaluation", "edgecxr.clinic", "edgecxr.cli", "edgecxr.progress"),
    "edgecxr.evaluation": ("edgecxr.clinic", "edgecxr.cli", "edgecxr.progress"),
    "edgecxr.clinic": ("edgecxr.evaluation", "edgecxr.clinic.dicomnet", "edgecxr.clinic.web", "edgecxr.cli", "edgecxr.progress"),
    "edgecxr.clinic.dicomnet": ("edgecxr.evaluation", "edgecxr.clinic.web", "edgecxr.cli", "edgecxr.progress"),
    "edgecxr.clinic.web": ("edgecxr.evaluation", "edgecxr.clinic.dicomnet", "edgecxr.cli", "edgecxr.progress"),
}


def module_sources(root: Path, package: str = "edgecxr") -> dict[str, str]:
    """{dotted module name: source} of every ``.py`` file under ``root`` (a package's ``__init__`` by the package's name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path.read_text(encoding="utf-8")
    return out


def import_graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """{module: the package's modules it imports anywhere in its body}; ``from pkg import name`` names the module ``pkg.name`` when there is one."""
    graph: dict[str, set[str]] = {}
    for name, source in sources.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(source, filename=name)):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, node, sources) if node.level else node.module or ""
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in sources else base)
        graph[name] = {t for t in targets if t in sources and t != name}
    return graph


def _absolute(name: str, node: ast.ImportFrom, sources: Mapping[str, str]) -> str:
    """The absolute module a relative ``from`` import in module ``name`` means."""
    here = name.split(".") if _is_package(name, sources) else name.split(".")[:-1]
    base = here[: len(here) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_package(name: str, sources: Mapping[str, str]) -> bool:
    return any(other.startswith(name + ".") for other in sources)


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted: every import loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> str | None:
    return max((layer for layer in FORBIDDEN if module == layer or module.startswith(layer + ".")), key=len, default=None)


def broken_layers(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """``importer -> imported`` for every import a module's layer forbids."""
    out = []
    for module, imported in sorted(graph.items()):
        layer = layer_of(module)
        if layer is None:
            continue
        for target in sorted(imported):
            if any(target == bad or target.startswith(bad + ".") for bad in FORBIDDEN[layer]) and layer_of(target) != layer:
                out.append(f"{module} -> {target}")
    return out


GRAPH = import_graph(module_sources(PACKAGE))


def test_the_graph_is_read_from_the_whole_package_with_function_level_imports():
    assert {"edgecxr.cli", "edgecxr.core.model", "edgecxr.core.lungs", "edgecxr.evaluation.adapt", "edgecxr.clinic.worker",
            "edgecxr.clinic.dicomnet.listen", "edgecxr.clinic.web.app"} <= set(GRAPH)
    assert "edgecxr.core.interpreter" in GRAPH["edgecxr.core.lungs"]  # module level
    assert "edgecxr.clinic.dicomnet.listen" in GRAPH["edgecxr.cli"]  # inside a function
    assert "edgecxr.core.registry" in GRAPH["edgecxr.core.model"]  # `from edgecxr.core import registry` is the module
    assert sum(len(v) for v in GRAPH.values()) > 100  # 148 when this was written


def test_no_import_cycle_among_the_package_modules():
    assert cycles(GRAPH) == []


def test_each_layer_imports_only_what_its_folder_allows():
    assert broken_layers(GRAPH) == []


def test_preprocessing_never_reaches_the_lung_model_and_the_lung_model_never_the_classifier():
    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in GRAPH[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    assert "edgecxr.core.lungs" not in reach("edgecxr.core.preprocess")
    assert "edgecxr.core.model" not in reach("edgecxr.core.lungs")


def test_the_checks_find_a_loop_a_lazy_import_makes_and_a_layer_crossed():
    sources = {
        "edgecxr": "",
        "edgecxr.core": "",
        "edgecxr.core.a": "from edgecxr.core import b\n",
        "edgecxr.core.b": "def f():\n    from edgecxr.core.c import g\n",
        "edgecxr.core.c": "def g():\n    from . import a\n    import edgecxr.evaluation.e\n",
        "edgecxr.evaluation": "",
        "edgecxr.evaluation.e": "from edgecxr.core.a import x\n",
    }
    graph = import_graph(sources)
    assert graph["edgecxr.core.c"] == {"edgecxr.core.a", "edgecxr.evaluation.e"}
    assert cycles(graph) == [["edgecxr.core.a", "edgecxr.core.b", "edgecxr.core.c", "edgecxr.evaluation.e"]]
    assert broken_layers(graph) == ["edgecxr.core.c -> edgecxr.evaluation.e"]


def test_every_module_sits_in_a_layer_folder_but_the_command_line_and_the_package_face():
    top = {"edgecxr", "edgecxr.__main__", "edgecxr.cli", "edgecxr.progress"}
    assert sorted(m for m in GRAPH if layer_of(m) is None and m not in top) == []
