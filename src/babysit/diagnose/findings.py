"""Findings: what is wrong, the numbers that show it, the lecture rule behind it, the fix.

Every preflight check and every diagnosis rule speaks in `Finding`s, so a
terminal table, a JSON file and the HTML report render them the same way.

    Finding("dead_relu", "error", "92% of the ReLUs in layer 2 never fire",
            evidence={"layer": "2", "dead_fraction": 0.92},
            lecture_rule="LECTURE_DIGEST §1: 10-20% dead ReLUs is common and tolerable",
            fix="lower the learning rate, or initialise biases at 0 / 0.01")

Ranking: `rank` orders by severity only and is stable, so at equal severity a
finding produced earlier comes first. Producers emit in the order of the
lectures' procedure (data -> initialisation -> loss sanity -> learning rate ->
tiny overfit -> training curves), which puts an upstream cause before the
downstream symptoms it explains.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.markup import escape
from rich.table import Table

SEVERITIES = ("error", "warning", "info")
_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def json_ready(value: Any) -> Any:
    """`value` with tuples as lists, numpy/torch scalars as floats and NaN/inf as strings (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem.

    Args:
        rule: id of the rule or check that produced it (e.g. "dead_relu").
        severity: "error" (training will not work), "warning" (it will work badly)
            or "info" (worth knowing).
        title: one line naming the problem with its key number.
        evidence: the measured values (layers, steps, ratios), JSON-ready.
        lecture_rule: the rule from LECTURE_DIGEST.md this applies.
        fix: a concrete change to make.
    """

    rule: str
    severity: str
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    lecture_rule: str = ""
    fix: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"Finding severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN/inf written as strings)."""
        return json_ready(asdict(self))

    def __repr__(self) -> str:
        return f"Finding({self.severity}: {self.rule}: {self.title})"


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings, then infos; production order kept within a severity."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def findings_table(findings: Iterable[Finding], title: str = "diagnosis") -> Table:
    """A rich table of ranked findings: severity, problem, fix and the lecture rule."""
    table = Table(title=title, show_lines=True)
    table.add_column("severity")
    table.add_column("problem (evidence)")
    table.add_column("fix")
    table.add_column("lecture rule", style="dim")
    for f in rank(findings):
        # Titles and fixes can quote user strings (class names, layer names): printed as text, never as markup.
        table.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", f"{escape(f.title)}\n[dim]{f.rule}[/]", escape(f.fix), escape(f.lecture_rule))
    return table
