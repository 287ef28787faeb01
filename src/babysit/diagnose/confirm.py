"""Root cause by experiment: when a look leaves more than one candidate cause, a short look with each one fixed says which.

The diagnosis ranks causes by the declared causal table (`diagnose.kinds`), but two
faults that explain nothing of each other (a learning rate and an initialisation,
say) both stand as roots, and their order is then only a convention. Where babysit
owns the loop (`doctor`, and `auto` through it), it can ask the program instead:
for each candidate, the same short look is run with that one cause fixed (the fix
`doctor --fix` would apply, `workflows.repair`, and nothing else: not the learning
rate a repair round retunes after a change of scale, which would fix a
learning-rate fault too and confound the two), and the validation accuracies are
compared with the first look's on the same validation split:

- **confirmed**: the fix raised the validation accuracy beyond its noise (the
  one-sided 95% two-proportion test of `diagnose.significance`), and no other
  candidate's fix raised it more beyond noise (among those level with the best,
  the diagnosis's own order decides): this cause is named first, at error level,
  with the numbers;
- **helped**: it raised it beyond noise too, but less than the confirmed one;
- **refuted**: it did not (the finding stays, with the experiment as evidence).

Each experiment costs one look (the preflight checks and the short run); the
findings list what each cost. Candidates are the distinct roots of the
error-level findings, then of the warnings, that have an automatic fix, at most
`MAX_CANDIDATES`; with fewer than two there is nothing to decide.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from babysit.diagnose import significance
from babysit.diagnose.findings import Finding, rank, root_causes
from babysit.diagnose.kinds import KINDS
from babysit.io import atomic_write_json

MAX_CANDIDATES = 3
# Where a look's experiments are saved (its run folder), so `babysit report` shows them.
CONFIRM_FILE = "confirm.json"


@dataclass
class Experiment:
    """One counterfactual look: the cause it tested, the change, the accuracies and the verdict."""

    rule: str
    change: str
    baseline: float | None
    val_accuracy: float | None
    verdict: str  # confirmed | helped | refuted
    cpu_seconds: float
    run_dir: str

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def candidates(findings: list[Finding]) -> list[Finding]:
    """The distinct roots of the error-level findings, then of the warnings, that have an automatic fix (at most `MAX_CANDIDATES`)."""
    out: list[Finding] = []
    for severity in ("error", "warning"):
        for root in root_causes(findings, severity):
            kind = KINDS.get(root.rule)
            if kind is not None and kind.repair is not None and all(r.rule != root.rule for r in out):
                out.append(root)
    return out[:MAX_CANDIDATES]


def judge(baseline: float | None, results: list[tuple[Finding, str, float | None, float, str]], n_val: int) -> list[Experiment]:
    """The verdict of each (finding, change, val accuracy, CPU seconds, run dir) against the first look's `baseline` accuracy."""
    def rises(acc: float | None) -> bool:
        if acc is None or baseline is None:
            return False
        se = significance.proportion_se(acc, n_val, baseline, n_val)
        # Strictly higher: with both accuracies at 0 or 1 the standard error is 0 and "no change" would pass.
        return acc > baseline and significance.verdict(acc - baseline, se, 0.0) == "pass"

    helped = [i for i, (_, _, acc, _, _) in enumerate(results) if rises(acc)]
    top = max((results[i][2] for i in helped), default=None)

    def level_with_top(i: int) -> bool:
        acc = results[i][2]
        se = significance.proportion_se(top, n_val, acc, n_val)
        return significance.verdict(top - acc, se, 0.0) != "pass"

    # Among the fixes the best one does not beat beyond noise, the diagnosis's own order decides (the first candidate).
    best = next((i for i in helped if level_with_top(i)), None)
    out = []
    for i, (f, change, acc, seconds, run_dir) in enumerate(results):
        verdict = "confirmed" if i == best else "helped" if rises(acc) else "refuted"
        out.append(Experiment(f.rule, change, baseline, acc, verdict, round(seconds, 2), run_dir))
    return out


def apply(findings: list[Finding], experiments: list[Experiment] | list[dict[str, Any]]) -> list[Finding]:
    """The findings with each experiment's verdict in its cause's finding (the confirmed one at error level, named first), ranked."""
    by_rule = {(e["rule"] if isinstance(e, dict) else e.rule): (e if isinstance(e, dict) else e.to_dict()) for e in experiments}
    out = []
    for f in findings:
        e = by_rule.get(f.rule)
        if e is None or f.explained_by is not None and e["verdict"] != "confirmed":
            out.append(f)
            continue
        accs = f"validation accuracy {_pct(e['baseline'])} -> {_pct(e['val_accuracy'])} with {e['change']}"
        if e["verdict"] == "confirmed":
            out.append(replace(f, severity="error", confirmed=True, explained_by=None, title=f"{f.title} [confirmed: {accs}]",
                               evidence={**f.evidence, "experiment": e}))  # fmt: skip
        else:
            out.append(replace(f, confirmed=e["verdict"] == "helped", evidence={**f.evidence, "experiment": e}))
    return rank(out)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def run_experiments(
    findings: list[Finding],
    baseline: float | None,
    n_val: int,
    look: Callable[[Finding, int], tuple[str, float | None, str] | None],
) -> list[Experiment]:
    """Test each candidate cause of `findings` with `look(finding, i) -> (change, val accuracy, run dir)` (None: no automatic fix).

    Returns no experiment when fewer than two candidates can be tested.
    """
    chosen = candidates(findings)
    if len(chosen) < 2:
        return []
    results = []
    for i, f in enumerate(chosen, start=1):
        start = time.process_time()
        done = look(f, i)
        if done is not None:
            change, acc, run_dir = done
            results.append((f, change, acc, time.process_time() - start, run_dir))
    return judge(baseline, results, n_val) if len(results) >= 2 else []


def save(folder: str | Path, experiments: list[Experiment]) -> Path:
    """Write the experiments as confirm.json in a look's run folder (atomically)."""
    return atomic_write_json(Path(folder) / CONFIRM_FILE, {"experiments": [e.to_dict() for e in experiments]})


def load(folder: str | Path) -> list[dict[str, Any]]:
    """The experiments saved in a run folder ([] when none, or when the file is damaged)."""
    file = Path(folder) / CONFIRM_FILE
    if not file.is_file():
        return []
    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
        experiments = saved["experiments"]
        keys = {"rule", "change", "baseline", "val_accuracy", "verdict"}
        if not isinstance(experiments, list) or not all(isinstance(e, dict) and keys <= set(e) for e in experiments):
            return []
        return [e for e in experiments if e["rule"] in KINDS and e["verdict"] in ("confirmed", "helped", "refuted")]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return []
