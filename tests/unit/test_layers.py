"""The library's import graph: layers that hold and no cycles (docs/architecture.md, "Layers").

Every `import` in `rlkit/` counts, lazy ones inside functions too (they are real arrows at run
time); only `if TYPE_CHECKING:` blocks are skipped.  A module may import its own layer or lower
ones; `rlkit/` imports nothing from the shipped top-level `rewards/` and `rollouts/` (recipes
name those by path or registered name), and no set of modules imports itself round.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# lowest first; a module's layer is that of its longest matching prefix
LAYERS = {
    "rlkit.plugins": 0,
    "rlkit.config": 0,
    "rlkit.algos": 1,
    "rlkit.analysis": 1,
    "rlkit.data": 1,
    "rlkit.sandbox": 1,
    "rlkit.engines": 2,
    "rlkit.rewards": 2,
    "rlkit.credit": 3,
    "rlkit.eval": 3,
    "rlkit.runtime": 4,
    "rlkit.agents": 4,  # environments and the multi_turn strategy: plugged into the controller
    "rlkit.methods": 5,
    "rlkit.cli": 6,
}
SHIPPED = ("rewards", "rollouts")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                skip.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return skip


def import_graph() -> dict[str, set[str]]:
    """module -> the modules (rlkit's, or shipped top-level ones) it imports."""
    files = {_module_name(p): p for p in (ROOT / "rlkit").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", 0) in skip:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
                targets.update(subs or [base])
        graph[mod] = {t for t in targets if t != mod and (t in files or t.split(".")[0] in SHIPPED)}
    return graph


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def test_every_rlkit_module_has_a_layer():
    missing = [
        m
        for m in import_graph()
        if m != "rlkit" and not any(m == p or m.startswith(p + ".") for p in LAYERS)
    ]
    assert not missing, f"modules outside every layer (add them to LAYERS): {missing}"


def test_no_import_goes_up_a_layer_or_into_shipped_content():
    bad = []
    for mod, targets in sorted(import_graph().items()):
        for t in sorted(targets):
            if t.split(".")[0] in SHIPPED:
                bad.append(f"{mod} -> {t} (shipped content)")
            elif mod != "rlkit" and t != "rlkit" and layer(t) > layer(mod):
                bad.append(f"{mod} (layer {layer(mod)}) -> {t} (layer {layer(t)})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_an_upward_import_and_a_cycle():
    """The rules above would fail on a graph that breaks them."""
    assert layer("rlkit.runtime.controller.spine") > layer("rlkit.engines.vllm_engine")
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
