"""The package's layering: the simulator's modules import each other without a cycle, and no
feature's command-line module imports the ``planner`` command group (it registers commands on it).

Every import counts, also those inside functions and under ``TYPE_CHECKING``: a lazy import that
closes a circle still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "planner"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every planner module ``path`` imports, anywhere in the file (``from planner.sim import x``
    counts as ``planner.sim.x`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names}
            modules = {m for m in subs if (ROOT / Path(*m.split("."))).with_suffix(".py").is_file()}
            # Names that are all submodules depend on those, not on the package's other code.
            found.update(modules if modules == subs else {*modules, node.module})
    return {m for m in found if m == "planner" or m.startswith("planner.")}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_simulator_imports_are_acyclic() -> None:
    sim = {m: {d for d in deps if d.startswith("planner.sim.")} for m, deps in graph().items()}
    sim = {m: deps for m, deps in sim.items() if m.startswith("planner.sim.")}
    assert cycles(sim) == []


def test_feature_command_lines_do_not_import_the_command_group() -> None:
    g = graph()
    features = [m for m in g if m.startswith("planner.") and m.split(".")[-1].endswith("cli") and m != "planner.cli"]
    assert features, "no feature command-line module found"
    assert [m for m in features if "planner.cli" in g[m]] == []
    # The command group reaches the features' commands only through EXTENSIONS (importlib).
    assert [d for d in g["planner.cli"] if d in features] == []
