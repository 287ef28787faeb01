"""Findings: what is wrong, the numbers that show it, the lecture rule behind it, the fix.

Every preflight check and every diagnosis rule speaks in `Finding`s, so a
terminal table, a JSON file and the HTML report render them the same way.

    Finding("dead_relu_at_init", "error", "92% of the ReLUs in layer 2 never fire",
            evidence={"layer": "2", "dead_fraction": 0.92},
            lecture_rule="docs/lectures.md §1: 10-20% dead ReLUs is common and tolerable")

The id (`rule`) must name a kind declared in `diagnose.kinds`, which also gives
the finding its phase and, unless the producer words a more specific one, its fix.

Ranking (`rank`): root causes first, each followed by the symptoms it
explains. A finding is a symptom when another present finding explains it
(`diagnose.kinds.explains`); it then carries that cause's id in
`explained_by`. Roots are ordered by: a cause confirmed by experiment first, then faults before infos, then phase
(data < program < init < training: the data feeds the program, which builds
and moves the network), then causes before plain findings, then severity, then
`first_seen`, then production order. Severity never puts a symptom before its cause.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from babysit.diagnose.kinds import KINDS, PHASES, UNKNOWN, explains, is_cause, kind_of, phase_of

if TYPE_CHECKING:  # rich loads when a table is drawn: diagnosing a run does without it
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
        rule: the kind of finding, declared in `diagnose.kinds` (e.g. "dead_relu_at_init").
        severity: "error" (training will not work), "warning" (it will work badly)
            or "info" (worth knowing).
        title: one line naming the problem with its key number.
        evidence: the measured values (layers, steps, ratios), JSON-ready.
        lecture_rule: the rule this applies, citing docs/lectures.md or the public CS231n notes.
        fix: a concrete change to make; by default the fix its kind declares.
        phase: "data", "program", "init" or "training", where the fault starts; by
            default the phase its kind declares.
        first_seen: the step (probes) or epoch (curves) where it first showed; None for a preflight finding.
        explained_by: the id of the finding that explains this one (set by `rank`), None for a root cause.
        confirmed: True when a counterfactual look confirmed this cause (fixing it restored learning),
            False when one refuted it, None when none was run (`workflows.confirm`).
    """

    rule: str
    severity: str
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    lecture_rule: str = ""
    fix: str = ""
    phase: str = ""
    first_seen: int | None = None
    explained_by: str | None = None
    confirmed: bool | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"Finding severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.rule != UNKNOWN:
            kind = kind_of(self.rule)  # refuses an undeclared id where it is made
            if not self.fix:
                object.__setattr__(self, "fix", kind.fix)
        if not self.phase:
            object.__setattr__(self, "phase", phase_of(self.rule))  # frozen: the declared default
        if self.phase not in PHASES:
            raise ValueError(f"Finding phase must be one of {PHASES}, got {self.phase!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN/inf written as strings)."""
        return json_ready(asdict(self))

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Finding:
        """A finding read back from disk (`to_dict`'s form); a kind this version does not declare reads as `UNKNOWN`.

        The recorded id is kept in the evidence as "recorded_rule", and a cause that is
        not declared is dropped, so an old or edited record still reads. Raises
        TypeError/ValueError for something that is not a finding at all.
        """
        if not isinstance(saved, dict):
            raise TypeError(f"a finding is a JSON object, got {type(saved).__name__}")
        fields = dict(saved)
        rule = fields.get("rule")
        if not isinstance(rule, str):
            raise TypeError("a finding needs a string 'rule'")
        if rule != UNKNOWN and rule not in KINDS:
            evidence = fields.get("evidence") if isinstance(fields.get("evidence"), dict) else {}
            fields.update(rule=UNKNOWN, evidence={**evidence, "recorded_rule": rule}, phase="")
        if fields.get("explained_by") is not None and fields["explained_by"] not in KINDS:
            fields["explained_by"] = None
        return cls(**fields)

    def __repr__(self) -> str:
        return f"Finding({self.severity}: {self.rule}: {self.title})"


def worst_severity(findings: Iterable[Finding]) -> str:
    """"error", "warning" or "info", the worst over all `findings`; "ok" when there are none."""
    worst = min((SEVERITIES.index(f.severity) for f in findings), default=None)
    return "ok" if worst is None else SEVERITIES[worst]


def _root_key(f: Finding, index: int) -> tuple[Any, ...]:
    first = f.first_seen if f.first_seen is not None else -1  # preflight (None) before any step
    # A cause an experiment confirmed comes before every other root: it is the one whose fix restored learning.
    return (f.confirmed is not True, f.severity == "info", PHASES.index(f.phase), not is_cause(f.rule), SEVERITIES.index(f.severity), first, index)


class Findings(list):
    """Ranked findings: a plain list, which a Jupyter notebook shows as the report's finding cards."""

    def _repr_html_(self) -> str:
        from babysit.report.run_report import findings_page  # the report's HTML loads only when a notebook asks

        return findings_page(self).fragment()


def rank(findings: Iterable[Finding]) -> Findings:
    """Root causes first, each followed by the symptoms it explains (with `explained_by` set).

    A finding is a symptom when another present finding explains it
    (`diagnose.kinds.explains`). The declarations are acyclic, so a depth-first walk
    from the roots that emits a symptom right after the last of its present
    causes puts every cause before every symptom it explains, whatever the input
    order and severities; `explained_by` names its first-listed cause. See the
    module docstring for the order of the roots.
    """
    items = list(findings)
    keys = {id(f): _root_key(f, i) for i, f in enumerate(items)}
    ordered = sorted(items, key=lambda f: keys[id(f)])
    causes = {id(f): [c for c in ordered if c.rule != f.rule and explains(c.rule, f.rule)] for f in ordered}
    placed: dict[int, int] = {}  # id -> position in the output
    out: list[Finding] = []

    def visit(f: Finding) -> None:
        first = min(causes[id(f)], key=lambda c: placed[id(c)], default=None)
        placed[id(f)] = len(out)
        out.append(replace(f, explained_by=first.rule if first is not None else None, fix=_symptom_fix(f, first)))
        for child in ordered:
            if id(child) not in placed and any(c is f for c in causes[id(child)]) and all(id(c) in placed for c in causes[id(child)]):
                visit(child)

    for f in ordered:
        if not causes[id(f)]:
            visit(f)
    return Findings(out)


def _symptom_fix(f: Finding, cause: Finding | None) -> str:
    """A symptom's fix; when its cause is not the learning rate, never "change the learning rate" but "fix the cause first"."""
    if cause is None or f.rule not in KINDS or cause.rule not in KINDS:
        return f.fix
    if KINDS[f.rule].lr is not None and KINDS[cause.rule].lr is None:
        return f"follows from {cause.rule}: fix that first ({cause.fix})"
    return f.fix


def root_causes(ranked: list[Finding], severity: str = "error") -> list[Finding]:
    """The root causes of the `severity`-level findings of a ranked list, in order of their first such finding, each once.

    A root whose own severity is lower still counts when it explains a finding of `severity`
    (a learning-rate warning whose symptom is an exploding loss): fixing it is what clears the error.
    """
    by_rule = {f.rule: f for f in ranked}
    roots: list[Finding] = []
    for f in ranked:
        if f.severity != severity:
            continue
        root, seen = f, {f.rule}
        while root.explained_by is not None and root.explained_by in by_rule and root.explained_by not in seen:
            seen.add(root.explained_by)
            root = by_rule[root.explained_by]
        if all(r.rule != root.rule for r in roots):
            roots.append(root)
    return roots


def findings_table(findings: Iterable[Finding], title: str = "diagnosis") -> Table:
    """A rich table of ranked findings: severity, problem, fix and the lecture rule."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=True)
    table.add_column("severity")
    table.add_column("problem (evidence)")
    table.add_column("fix")
    table.add_column("lecture rule", style="dim")
    for f in rank(findings):
        # Titles and fixes can quote user strings (class names, layer names): printed as text, never as markup.
        where = f"{f.phase}" + (f", first seen at {f.first_seen}" if f.first_seen is not None else "")
        cause = f"\n[italic]explained by: {escape(f.explained_by)}[/]" if f.explained_by else ""
        problem = f"{'  ' if f.explained_by else ''}{escape(f.title)}\n[dim]{f.rule} ({where})[/]{cause}"
        table.add_row(f"[{_STYLE[f.severity]}]{f.severity}[/]", problem, escape(f.fix), escape(f.lecture_rule))
    return table
