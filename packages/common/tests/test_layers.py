"""The layers of docs/architecture.md hold: no import circle (module-level or inside functions),
stages never import the operations layer, the common layer names no stage, verbs import no verb."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STAGES = ("embedder", "reranker", "generator", "query_rewriter")
VERBS = ("teach", "train", "export", "evaluate")


def _modules() -> dict[str, Path]:
    mods = {}
    for src in [*ROOT.glob("packages/*/src"), ROOT / "e2e" / "src"]:
        for f in src.rglob("*.py"):
            name = ".".join(f.relative_to(src).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = f
    return mods


def _graph() -> dict[str, set[str]]:
    """module -> the ragdistill modules it imports anywhere (a package's own __init__ excluded)."""
    mods = _modules()

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    g: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for n in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else \
                [n.module, *(f"{n.module}.{a.name}" for a in n.names)] if isinstance(n, ast.ImportFrom) and n.module else []
            for x in names:
                t = resolve(x) if x.startswith("ragdistill") else ""
                if t and t != m and not m.startswith(t + "."):
                    g[m].add(t)
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = [stack.pop()]
            while comp[-1] != v:
                comp.append(stack.pop())
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_and_the_layers_hold():
    g = _graph()
    assert len(g) > 100  # the whole tree was read
    assert _cycles(g) == []
    for m, deps in g.items():
        if any(m.startswith(f"ragdistill.{s}") for s in STAGES):
            assert not [d for d in deps if d.startswith("ragdistill.common.ops")], f"{m} imports the ops layer"
            verb = m.rpartition(".")[2]
            if verb in VERBS:  # verbs import nouns, never other verbs
                stage = m.rpartition(".")[0]
                assert not [d for d in deps if d in {f"{stage}.{v}" for v in VERBS}], f"{m} imports another verb"
        if m.startswith("ragdistill.common"):
            assert not [d for d in deps if d.startswith(tuple(f"ragdistill.{s}" for s in (*STAGES, "e2e")))], \
                f"{m} imports a stage or the harness by name"
    # the check can fail: a circle planted in the graph is found
    g["ragdistill.common.io"].add("ragdistill.common.cli")
    assert _cycles(g)
