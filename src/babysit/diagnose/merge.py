"""One ranked list from the preflight checks and a run's diagnosis (what the report and `babysit doctor` show).

    findings = bs.merge_findings(bs.load_run("runs/mine"), report.to_dict())
"""

from __future__ import annotations

from typing import Any

from babysit.diagnose.findings import Finding, rank
from babysit.diagnose.record import run_view
from babysit.diagnose.rules import LAYER_RULES, RULES, diagnose, rate_shown_to_work


def merge_findings(record: Any, check: dict[str, Any] | None = None) -> list[Finding]:
    """The preflight findings and the diagnosis of the run, ranked together, one per rule id.

    At equal severity the order is the CS231n babysitting procedure's (cs231n.github.io/neural-networks-3), so a
    cause comes before its symptoms: the data checks, the initialisation check
    and the run's per-layer probes (dead ReLUs make the range test find no
    descent at low rates), the other checks, then the run's curves. A rule that
    fires twice keeps its more severe finding, the earlier at a tie.

    Args:
        record: the run (anything `diagnose` reads: a RunRecord, its dict form, ...).
        check: a saved preflight report (`CheckReport.to_dict()`, check.json), or None.
    """
    checks = (check or {}).get("checks", [])
    split = next((i + 1 for i, c in enumerate(checks) if c.get("name") == "init_health"), 0)
    before, after = ([Finding.from_dict(f) for c in part for f in c.get("findings", [])] for part in (checks[:split], checks[split:]))
    curve_rules = [name for name in RULES.names() if name not in LAYER_RULES]
    run = run_view(record)  # read once: a long run's record is read, checked and cached here for every rule below
    found = before + diagnose(run, rules=LAYER_RULES) + after + diagnose(run, rules=curve_rules)
    # The range test's warnings predict a rate's trouble before training; the run's curve can show there is
    # none (a loss that never rose, for "too high"; one that fell steadily, for "too low"). Errors stay.
    found = [f for f in found if f.severity == "error" or f.rule not in ("lr_too_high", "lr_too_low") or not rate_shown_to_work(run, f.rule)]
    seen: set[str] = set()
    unique = []
    for f in rank(found):
        if f.rule not in seen:
            seen.add(f.rule)
            unique.append(f)
    return unique
