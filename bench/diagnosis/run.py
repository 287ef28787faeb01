"""The diagnosis benchmark: run `bs.doctor(..., fix=True)` on every case of `cases.py` and score the ranked findings.

    python bench/diagnosis/run.py                       # both halves, all cases
    python bench/diagnosis/run.py --half tuning --limit 40 --jobs 2

For each half it prints: top-1 accuracy (the root cause of the first error-level
finding, or of the first warning when nothing is error-level, names the injected
fault: one of `cases.ACCEPTED[fault]`), top-1 at error level only (no fallback),
recall (the fault's id anywhere in the findings), error-level false alarms on the
healthy set-ups, repair success (of the repairable faults: the last look after
`fix=True` reaches at least 90% of the healthy twin's best validation accuracy
when the twin's learning rate is tuned at the same cost: the best of its looks at
the configured rate, the range test's proposal, 3x and 1/3x, as many as the
doctor spent on the broken set-up), the repairs kept although they lowered
validation accuracy (there must be none),
the confusion matrix (injected fault -> what was named first) and CPU seconds
per set-up; and it writes every case's result as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

REPAIR_SHARE = 0.9  # the repaired look must reach this share of the healthy twin's validation accuracy


def settings(fault: str = "healthy"):
    """The checks' budgets in the benchmark: babysit's defaults (what a user runs), with the opt-in gradient
    check turned on for the custom layer whose backward pass is wrong (as its user would, having written one)."""
    from babysit.checks.base import CheckSettings

    return CheckSettings(gradcheck=fault == "wrong_backward")


def first_root(findings: list[dict[str, Any]], fallback: bool = True) -> str | None:
    """The rule id of the root cause of the first error-level finding (what `doctor --fix` repairs first);
    with `fallback`, when nothing is error-level, of the first warning. None when there is neither."""
    from babysit.diagnose.findings import Finding, root_causes

    ranked = [Finding(f["rule"], f["severity"], "", explained_by=f["explained_by"]) for f in findings]
    for severity in ("error", "warning") if fallback else ("error",):
        roots = root_causes(ranked, severity)
        if roots:
            return roots[0].rule
    return None


def run_case(case_id: str) -> dict[str, Any]:
    """Build one case, run the doctor on it with fix=True, and return its findings, repairs and CPU seconds."""
    import torch

    torch.set_num_threads(1)
    import cases as bench
    from babysit.errors import BabysitError
    from babysit.workflows.doctor import doctor
    from babysit.workflows.repair import best_val_accuracy

    case = next(c for c in bench.all_cases() if c.id == case_id)
    start = time.process_time()
    out: dict[str, Any] = {"id": case.id, "fault": case.fault, "severity": case.severity, "arch": case.arch, "data": case.data,
                           "optimizer": case.optimizer, "seed": case.seed, "half": case.half, "family": case.family,
                           "repairable": bench.repairable(case)}  # fmt: skip
    try:
        with tempfile.TemporaryDirectory() as runs:
            cfg, model, data = bench.build(case)
            done = doctor(cfg, model=model, data=data, runs_dir=runs, settings=settings(case.fault), progress=False, fix=True, write_report=False)
            first = done.repairs[0].before if done.repairs else None
            out["findings"] = [{"rule": f.rule, "severity": f.severity, "explained_by": f.explained_by} for f in _first_findings(done)]
            out["val_accuracy_before"] = first["val_accuracy"] if first else best_val_accuracy(done)
            out["val_accuracy_after"] = best_val_accuracy(done)
            out["repairs"] = [r.to_dict() for r in done.repairs]
            out["stopped"] = done.stopped
            out["experiments"] = [e.to_dict() for e in done.experiments] if not done.repairs else confirm_load(done)
            out["n_val"] = len(data.val.y)
            out["looks"] = sum(1 for p in Path(runs).iterdir() if p.is_dir())
            if case.fault == "healthy":
                out["tuned_twin"] = tuned_twin(cfg, model, data, done)
    except BabysitError as e:
        out["refused"] = {"type": type(e).__name__, "message": str(e)}
        out["findings"] = []
    out["seconds"] = time.process_time() - start
    return out


# The rates a tuner tries after the configured one (the doctor's own look): the range test's proposal, then 3x
# above and below the configured rate. A repaired set-up is compared with the best healthy twin found in as
# many looks as the doctor spent on it (`score`): the twin's learning rate tuned at the same cost.
TWIN_RATES = ("proposal", 3.0, 1 / 3)


def tuned_twin(cfg, model, data, done) -> list[float | None]:
    """The healthy twin's best validation accuracy at the configured rate (doctor's look), then at each of `TWIN_RATES`."""
    import copy
    from dataclasses import replace

    from babysit.build import model_from_config
    from babysit.train.trainer import fit
    from babysit.workflows.repair import best_val_accuracy

    accs = [best_val_accuracy(done)]
    for rate in TWIN_RATES:
        lr = done.check.suggested_lr if rate == "proposal" else float(cfg.train.lr) * rate
        if lr is None:
            accs.append(None)
            continue
        net = copy.deepcopy(model) if model is not None else model_from_config(cfg.model, data, seed=cfg.train.seed)
        best = fit(net, data, replace(cfg.train, lr=float(lr)), progress=False).history.best("val_accuracy")
        accs.append(float(best["val_accuracy"]) if best else None)
    return accs


def twin_target(twin: dict[str, Any] | None, looks: int) -> float | None:
    """The best healthy-twin accuracy within the first `looks` rates (the doctor's cost), None without a twin."""
    if not twin:
        return None
    accs = [a for a in (twin.get("tuned_twin") or [twin.get("val_accuracy_after")])[: max(1, looks)] if a is not None]
    return max(accs) if accs else None


def advice_confirmed(twin: dict[str, Any], rules: list[str]) -> bool:
    """Whether the tuned twin shows a learning-rate advice right: the rate it points to (3x the way it points,
    or the range test's proposal for a finding that sets the rate) beats the configured rate by more than 2
    standard errors of the validation accuracy (`n_val` samples)."""
    from babysit.diagnose.kinds import KINDS

    accs = twin.get("tuned_twin") or []
    if len(accs) < 4 or accs[0] is None:
        return False
    way = {KINDS[r].lr for r in rules}
    if len(way) != 1:
        return False  # advice both ways: no way to follow it
    moved = {"raise": accs[2], "lower": accs[3], "set": accs[1]}[way.pop()]
    n = twin.get("n_val") or 0
    if not n:  # results written before n_val was recorded: the split is a function of the data set and seed
        import cases as bench

        n = len(bench.raw_data(twin["data"], twin["seed"]).val.y)
    se = math.sqrt(max(accs[0] * (1 - accs[0]), 1e-4) / n) if n else float("inf")
    return moved is not None and moved - accs[0] > 2 * se


def confirm_load(done) -> list:
    """The experiments of the first look (saved in its run folder), when repair rounds followed it."""
    from babysit.diagnose import confirm

    return confirm.load(Path(done.repairs[0].before["run_dir"]))


def _first_findings(done) -> list:
    """The findings of the first look (before any repair): what the diagnosis said about the set-up as given."""
    if not done.repairs:
        return done.findings
    from babysit.diagnose import confirm
    from babysit.diagnose.merge import merge_findings
    from babysit.report.run_report import read_check
    from babysit.train.record import load_run

    path = Path(done.repairs[0].before["run_dir"])
    return confirm.apply(merge_findings(load_run(path), read_check(path)), confirm.load(path))


def score(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Top-1 (error or warning root, and error root only), recall, false alarms, repair, confusion, seconds per set-up."""
    import cases as bench

    healthy = {r["family"]: r for r in results if r["fault"] == "healthy"}  # the twins of the rotation's faults
    sound = [r for r in results if r["fault"].startswith("healthy")]  # with the healthy set-ups outside it
    faulty = [r for r in results if not r["fault"].startswith("healthy")]
    named, named_error, recalled, confusion = 0, 0, 0, defaultdict(Counter)
    for r in faulty:
        accepted = bench.ACCEPTED[r["fault"]]
        if "refused" in r:
            kind, word = bench.REFUSED.get(r["fault"], (None, None))
            ok = r["refused"]["type"] == kind and word.lower() in r["refused"]["message"].lower()
            top = "refused" if ok else f"refused:{r['refused']['type']}"
            named += ok
            named_error += ok
            recalled += ok
            confusion[r["fault"]][top] += 1
            continue
        top = first_root(r["findings"])
        top_err = first_root(r["findings"], fallback=False)
        named += top in accepted
        named_error += top_err in accepted
        recalled += any(f["rule"] in accepted for f in r["findings"])
        confusion[r["fault"]][top or "nothing"] += 1
    from babysit.diagnose.kinds import KINDS

    lr_advice = {r["id"]: [f["rule"] for f in r["findings"] if f["rule"] in KINDS and KINDS[f["rule"]].lr is not None] for r in sound}
    lr_wrong = {k: v for k, v in lr_advice.items() if v and not advice_confirmed(next(r for r in sound if r["id"] == k), v)}
    alarms = [r for r in sound if "refused" in r or any(f["severity"] == "error" for f in r["findings"])]
    repairs = [r for r in faulty if r["repairable"] and "refused" not in r]
    fixed = []
    for r in repairs:
        target = twin_target(healthy.get(r["family"]), r.get("looks", 1))
        got = r.get("val_accuracy_after")
        fixed.append(target is not None and got is not None and got >= REPAIR_SHARE * target)
    # A repair doctor kept must have raised the validation accuracy (it keeps only what rose beyond noise).
    worse = [r["id"] for r in faulty for k in r.get("repairs", []) if k["helped"] and (k["after"]["val_accuracy"] or 0) < (k["before"]["val_accuracy"] or 0)]
    n = max(1, len(faulty))
    return {
        "cases": len(results),
        "faulty": len(faulty),
        "healthy": len(sound),
        "top1": named / n,
        "top1_error": named_error / n,
        "recall": recalled / n,
        "false_alarms": len(alarms) / max(1, len(sound)),
        "false_alarm_rules": Counter(f["rule"] for r in alarms for f in r["findings"] if f["severity"] == "error"),
        "lr_advice_on_healthy": {k: v for k, v in lr_advice.items() if v},
        "lr_advice_contradicted": lr_wrong,
        "repair": sum(fixed) / max(1, len(fixed)),
        "repairable": len(fixed),
        "kept_but_worse": worse,
        "seconds_per_case": sum(r["seconds"] for r in results) / max(1, len(results)),
        "confusion": {k: dict(v) for k, v in sorted(confusion.items())},
        "per_fault_top1": {k: v.get("refused", 0) / sum(v.values()) if k in bench.REFUSED else
                           sum(c for rule, c in v.items() if rule in bench.ACCEPTED[k]) / sum(v.values()) for k, v in sorted(confusion.items())},
    }  # fmt: skip


def print_scores(name: str, s: dict[str, Any]) -> None:
    """One half's figures and its confusion matrix as text."""
    print(f"\n== {name} half: {s['cases']} set-ups ({s['faulty']} broken, {s['healthy']} healthy) ==")
    print(f"top-1 (first root cause names the fault): {s['top1']:.1%}   at error level: {s['top1_error']:.1%}")
    print(f"recall (the fault anywhere): {s['recall']:.1%}")
    print(f"error-level false alarms on healthy set-ups: {s['false_alarms']:.1%}  {dict(s['false_alarm_rules'])}")
    print(f"healthy set-ups with a finding that moves the learning rate: {len(s['lr_advice_on_healthy'])}  {s['lr_advice_on_healthy']}; "
          f"contradicted by the tuned twin: {len(s.get('lr_advice_contradicted', {}))}")
    print(f"repair success ({s['repairable']} repairable; 90% of the healthy twin tuned at the same cost): {s['repair']:.1%}; "
          f"kept changes that lowered validation accuracy: {len(s.get('kept_but_worse', []))}")
    print(f"CPU seconds per set-up: {s['seconds_per_case']:.1f}")
    print("confusion (injected fault -> first root cause named):")
    for fault, row in s["confusion"].items():
        cells = ", ".join(f"{k} {v}" for k, v in sorted(row.items(), key=lambda kv: -kv[1]))
        print(f"  {fault:20s} top-1 {s['per_fault_top1'][fault]:5.0%}  {cells}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (see the module docstring) and return {half: scores}."""
    import cases as bench

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--half", choices=("tuning", "reporting", "both"), default="both")
    p.add_argument("--limit", type=int, default=None, help="at most N cases per half (a fixed spread over the half)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--only", default=None, help="comma-separated faults to run (plus their healthy twins)")
    p.add_argument("--smoke", action="store_true", help="the 20-case smoke subset (`cases.smoke_cases`)")
    p.add_argument("--out", default=str(HERE / "results.json"))
    p.add_argument("--rescore", action="store_true", help="score the runs already in --out again (after a change to the scoring)")
    args = p.parse_args(argv)
    if args.rescore:
        results = json.loads(Path(args.out).read_text())["cases"]
        scores = {h: score([r for r in results if r["half"] == h]) for h in ("tuning", "reporting")}
        for h, s in scores.items():
            print_scores(h, s)
        Path(args.out).write_text(json.dumps({"scores": scores, "cases": results}, indent=1, default=str))
        return scores
    halves = ("tuning", "reporting") if args.half == "both" else (args.half,)
    chosen = []
    for half in halves:
        pool = bench.smoke_cases() if args.smoke else bench.all_cases()
        part = [c for c in pool if c.half == half or args.smoke and half == halves[0]]
        if args.only:
            wanted = set(args.only.split(","))
            part = [c for c in part if c.fault in wanted or c.fault == "healthy"]
        if args.limit:
            step = max(1, len(part) // args.limit)
            part = part[::step][: args.limit]
        chosen += part
        if args.smoke:
            break
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        results = list(ex.map(run_case, [c.id for c in chosen]))
    scores = {}
    for half in ("smoke",) if args.smoke else halves:
        part = results if args.smoke else [r for r in results if r["half"] == half]
        scores[half] = score(part)
        print_scores(half, scores[half])
    print(f"\nwall {time.perf_counter() - start:.0f} s, CPU {sum(r['seconds'] for r in results) / 60:.1f} min for {len(results)} set-ups")
    Path(args.out).write_text(json.dumps({"scores": scores, "cases": results}, indent=1, default=str))
    print(f"per-case results: {args.out}")
    return scores


if __name__ == "__main__":
    main()
