"""The layout shows the layers: no import cycle between babysit's packages, and nothing below the
workflows imports them (the workflows compose training, checks, search and reports)."""

from __future__ import annotations

import ast
from pathlib import Path

import babysit as bs

SRC = Path(bs.__file__).parent
TOP = {"workflows", "cli", "lab", "__main__"}  # the layers above the rest; nothing below may import them


def unit_of(module: str) -> str | None:
    """The top-level unit (sub-package or module) of a dotted babysit module name."""
    parts = module.split(".")
    return parts[1] if parts[0] == "babysit" and len(parts) > 1 else None


def import_graph() -> dict[str, set[str]]:
    """unit -> units it imports at module level (TYPE_CHECKING blocks and function bodies excluded)."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        unit = rel.parts[0]
        if unit == "__init__":
            continue
        deps = graph.setdefault(unit, set())
        for node in ast.parse(path.read_text()).body:  # module level only
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                u = unit_of(n)
                if u and u != unit and ((SRC / u).is_dir() or (SRC / f"{u}.py").is_file()):
                    deps.add(u)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (c := visit(v)):
                return c
        state[u] = 2
        stack.pop()
        return None

    for u in sorted(graph):
        if u not in state and (c := visit(u)):
            return c
    return None


def test_no_import_cycle_between_packages():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_layers_below_never_import_the_workflows():
    graph = import_graph()
    offenders = {u: sorted(d & TOP) for u, d in graph.items() if u not in TOP and d & TOP}
    assert not offenders, offenders


def test_top_level_is_small_and_registries_live_in_blocks():
    names = [n for n in bs.__all__ if not n.islower() or callable(getattr(bs, n))]
    assert len(names) <= 25, names
    assert not [n for n in bs.__all__ if n.isupper()], "registries belong in bs.blocks"
    assert {"ACTIVATIONS", "OPTIMIZERS", "MODELS", "RULES", "CHECKS"} <= set(bs.blocks.__all__)
    assert len(bs.blocks.REGISTRIES) >= 15


def test_findings_is_one_thing_everywhere():
    """`findings` is a ranked list attribute on every result object, never a method."""
    from babysit.checks.preflight import CheckReport
    from babysit.report.run_report import RunReport
    from babysit.workflows.doctor import DoctorResult

    for cls in (CheckReport, DoctorResult):
        assert isinstance(cls.__dict__["findings"], property), cls
    assert "findings" in RunReport.__dataclass_fields__
