"""The program-bug benchmark: train every case of `programs` with a tool attached, verify the bugs in plain PyTorch, score the tools.

    python bench/diagnosis/run_programs.py --tool all --jobs 2          # plain, torchtest2, torch-audit, babysit
    python bench/diagnosis/run_programs.py --tool plain --half tuning    # the verification alone, one half
    python bench/diagnosis/run_programs.py --tool torchtest2 --only detached_body,no_step
    python bench/diagnosis/run_programs.py --smoke --tool plain,torchtest2,torch_audit

The plain tool always runs first: it is the **verification** (plain PyTorch, no
babysit code in the training). A healthy twin must reach its data set's floor
(`FLOORS`); a bug case is kept when it measurably hurts: a non-finite training
loss, or a final validation accuracy below its twin's by more than `margin`
(three standard errors of the difference of two accuracies on the validation
split, at least 5 points). Cases that fail are dropped from every score, and
listed with the reason. The verification goes to programs_verification.json.

Per tool and bug kind it prints: cause named / symptom only / missed over the
kept cases (`peers.verdict`), the false alarms on the healthy twins (any
error-level finding) and CPU seconds per case. For babysit also top-1 (the
first root cause names the bug: `run.first_root`), recall (the bug's id
anywhere), error-level findings on healthy twins and healthy twins with a
finding whose fix moves the learning rate. The scores and every run (its
findings, final accuracy and CPU seconds; the plain run's validation curve) go
to --out (programs_results.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TOOL_ORDER = ("plain", "torchtest2", "torch_audit", "babysit")
# A healthy twin must reach this validation accuracy (chance: 10% on MNIST-1D and digits, 33% on the spiral,
# 25% on the tabular set); measured healthy twins sit well above (README, "Verification").
FLOORS = {"mnist1d": 0.25, "digits": 0.75, "spiral": 0.5, "tabular": 0.6}
MIN_MARGIN = 0.05


def margin(accuracy: float, n: int) -> float:
    """How far below its twin a bug case's accuracy must fall to count: 3 standard errors of a difference of two accuracies, >= 5 points."""
    p = min(max(accuracy, 0.05), 0.95)
    return max(MIN_MARGIN, 3 * math.sqrt(2 * p * (1 - p) / n))


def _warm() -> None:
    """Import everything a case may need once per worker, so that no case's CPU seconds carry the imports."""
    import logging
    import warnings

    import torch

    torch.set_num_threads(1)
    import babysit  # noqa: F401
    import lightning.pytorch  # noqa: F401
    import peers  # noqa: F401
    import torch_audit  # noqa: F401
    import torchtest2  # noqa: F401
    from babysit.integrations import lightning  # noqa: F401

    # The benchmark's own output: Lightning's banners and deprecation notes would bury the tables
    # (after the imports: importing Lightning sets its loggers' level).
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_one(job: tuple[Any, str, bool]) -> dict[str, Any]:
    """Train one case with one tool (in a worker); an exception is recorded, not raised, so one case cannot end the run."""
    import torch

    torch.set_num_threads(1)
    from programs import scripts
    from programs.tools import BabysitTool, tools

    case, tool_name, with_check = job
    tool = BabysitTool(with_check=with_check) if tool_name == "babysit" else tools()[tool_name]()
    start = time.process_time()
    try:
        return scripts.run(case, tool)
    except Exception as e:  # noqa: BLE001 - a tool that crashes on a case is a result too
        return {"id": case.id, "bug": case.bug, "arch": case.arch, "data": case.data, "way": case.way, "family": case.family,
                "half": case.half, "tool": tool_name, "findings": [], "error": f"{type(e).__name__}: {e}",
                "seconds": time.process_time() - start}  # fmt: skip


def verify(plain: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per case id: the twin's and the case's validation accuracy, the margin, the status and whether the case is kept."""
    twins = {o["family"]: o for o in plain if o["bug"] == "healthy"}
    out = {}
    for o in plain:
        twin = twins.get(o["family"])
        row: dict[str, Any] = {"bug": o["bug"], "family": o["family"], "half": o["half"], "arch": o["arch"], "data": o["data"],
                               "way": o["way"], "accuracy": o.get("val_accuracy"), "finite": o.get("finite")}  # fmt: skip
        if "error" in o:
            row.update(status="error", kept=False, reason=o["error"])
        elif o["bug"] in ("healthy", "healthy_frozen"):
            ok = o["val_accuracy"] >= FLOORS[o["data"]]
            row.update(status="learns" if ok else "below_floor", kept=ok, floor=FLOORS[o["data"]])
        elif twin is None or "error" in twin or twin["val_accuracy"] < FLOORS[twin["data"]]:
            row.update(status="twin_below_floor", kept=False)
        else:
            m = margin(twin["val_accuracy"], o["n_val"])
            drop = twin["val_accuracy"] - o["val_accuracy"]
            hurts = not o["finite"] or drop > m
            row.update(healthy_accuracy=twin["val_accuracy"], margin=m, drop=drop, kept=hurts,
                       status=("not_finite" if not o["finite"] else "hurts") if hurts else "no_harm")  # fmt: skip
        out[o["id"]] = row
    return out


def babysit_scores(outcomes: list[dict[str, Any]], kept: set[str]) -> dict[str, Any]:
    """Top-1, recall, error-level false alarms and learning-rate advice on healthy twins (babysit's findings)."""
    from babysit.diagnose.kinds import KINDS
    from programs import ACCEPTED
    from run import first_root

    bugs = [o for o in outcomes if o["id"] in kept and o["bug"] in ACCEPTED]
    healthy = [o for o in outcomes if o["bug"] in ("healthy", "healthy_frozen")]
    named = [o for o in bugs if first_root(o["findings"]) in ACCEPTED[o["bug"]]]
    recalled = [o for o in bugs if any(f["rule"] in ACCEPTED[o["bug"]] for f in o["findings"])]
    alarms = {o["id"]: [f["rule"] for f in o["findings"] if f["severity"] == "error"] for o in healthy}
    lr_advice = {o["id"]: [f["rule"] for f in o["findings"] if f["rule"] in KINDS and KINDS[f["rule"]].lr is not None] for o in healthy}
    per_bug: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in bugs:
        per_bug[o["bug"]][0] += first_root(o["findings"]) in ACCEPTED[o["bug"]]
        per_bug[o["bug"]][1] += 1
    return {
        "cases": len(bugs),
        "top1": len(named) / max(1, len(bugs)),
        "recall": len(recalled) / max(1, len(bugs)),
        "healthy": len(healthy),
        "error_on_healthy": {k: v for k, v in alarms.items() if v},
        "lr_advice_on_healthy": {k: v for k, v in lr_advice.items() if v},
        "per_bug_top1": {b: f"{n}/{t}" for b, (n, t) in sorted(per_bug.items())},
        "errors": [o["id"] for o in outcomes if "error" in o],
        "confusion": {o["id"]: first_root(o["findings"]) for o in bugs if o not in named},
    }


def reused(path: str, ids: list[str], wanted: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """The runs of the tools not in `wanted` from an earlier results file, in the order of `ids` (every id must be there)."""
    old = json.loads(Path(path).read_text())["outcomes"]
    out = {}
    for tool, rows in old.items():
        if tool in wanted:
            continue
        by_id = {r["id"]: r for r in rows}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise SystemExit(f"{path} has no {tool} run of {len(missing)} of the cases (first {missing[0]}); run that tool again")
        out[tool] = [by_id[i] for i in ids]
    return out


def compact(outcomes: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """What the results file keeps of each run: no per-epoch history, but the plain run's validation curve (the verification's)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for tool, rows in outcomes.items():
        out[tool] = []
        for o in rows:
            row = {k: v for k, v in o.items() if k != "history"}
            if tool == "plain" and "history" in o:
                row["val_curve"] = [round(r["val_accuracy"], 4) for r in o["history"] if "val_accuracy" in r]
            out[tool].append(row)
    return out


def dump(result: dict[str, Any]) -> str:
    """The results as JSON: the scores indented, each run's outcome on one line (a rerun's diff shows per case).

    `result` holds "outcomes" (tool -> rows) and at least one other key.
    """
    head = json.dumps({k: v for k, v in result.items() if k != "outcomes"}, indent=1, default=str)
    tools = [f' "{tool}": [\n' + ",\n".join("  " + json.dumps(o, default=str) for o in rows) + "\n ]" for tool, rows in result["outcomes"].items()]
    return head[:-2] + ',\n "outcomes": {\n' + ",\n".join(tools) + "\n }\n}\n"


def print_verification(ver: dict[str, dict[str, Any]]) -> None:
    """Per bug kind: kept / total, mean twin and bug accuracy; then the dropped cases and why."""
    from programs import BUGS

    print("\n== verification (plain PyTorch): per bug kind, kept cases / all, mean validation accuracy twin -> bug ==")
    rows = defaultdict(list)
    for cid, r in ver.items():
        rows[r["bug"]].append((cid, r))
    for bug in ["healthy", "healthy_frozen", *BUGS]:
        cases = rows.get(bug, [])
        if not cases:
            continue
        kept = [r for _, r in cases if r["kept"]]
        acc = sum(r["accuracy"] or 0.0 for _, r in cases) / len(cases)
        twin = [r["healthy_accuracy"] for _, r in cases if "healthy_accuracy" in r]
        nan = sum(1 for _, r in cases if r["status"] == "not_finite")
        twin_text = f"{sum(twin) / len(twin):.2f} -> " if twin else ""
        print(f"  {bug:22s} kept {len(kept):2d}/{len(cases):2d}  accuracy {twin_text}{acc:.2f}" + (f"  ({nan} NaN)" if nan else ""))
    dropped = [(cid, r) for cid, r in ver.items() if not r["kept"]]
    if dropped:
        print("dropped:")
        for cid, r in dropped:
            detail = f"twin {r['healthy_accuracy']:.2f}, bug {r['accuracy']:.2f}, margin {r['margin']:.2f}" if "margin" in r else r.get("reason", "")
            print(f"  {cid}: {r['status']} {detail}")


def print_table(peer_table: dict[str, Any], babysit: dict[str, Any] | None) -> None:
    """The peers' table: per bug kind and tool, cause / symptom / missed; false alarms and CPU seconds per case."""
    from programs import BUGS

    tools = [t for t in TOOL_ORDER if t in peer_table]
    print("\n== per bug kind: cause named / symptom only / missed (kept cases) ==")
    print(f"  {'bug':22s}" + "".join(f"{t:>16s}" for t in tools))
    for bug in BUGS:
        cells = []
        for t in tools:
            c = peer_table[t]["per_bug"].get(bug)
            cells.append(f"{c['cause']}/{c['symptom']}/{c['missed']}" if c else "-")
        print(f"  {bug:22s}" + "".join(f"{c:>16s}" for c in cells))
    for t in tools:
        alarms = peer_table[t]["false_alarms"]
        ids = sorted({i for v in alarms.values() for i in v})
        extra = peer_table[t]["overhead_per_case"]
        print(f"{t}: false alarms on {len(alarms)} of {peer_table[t]['healthy']} healthy twins {ids}; "
              f"CPU s per case {peer_table[t]['seconds_per_case']:.2f}"
              + (f" ({extra:+.2f} over plain, loop and Lightning cases)" if extra is not None else ""))  # fmt: skip
    for name, b in [("", babysit)] + [(f" ({h} half)", babysit.get(h)) for h in ("tuning", "reporting")] if babysit else []:
        if b:
            print(f"babysit{name}: top-1 {b['top1']:.1%}, recall {b['recall']:.1%} of {b['cases']}; "
                  f"error on {len(b['error_on_healthy'])} healthy, learning-rate advice on {len(b['lr_advice_on_healthy'])}")  # fmt: skip


def select(half: str, smoke: bool, only: str | None) -> list[Any]:
    """The cases of a half (or the smoke subset), optionally only some bugs (their twins always come along)."""
    from programs import all_cases, smoke_cases

    pool = smoke_cases() if smoke else [c for c in all_cases() if half == "both" or c.half == half]
    if only:
        wanted = set(only.split(","))
        pool = [c for c in pool if c.bug in wanted or c.healthy]
    return pool


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); returns {"verification", "peers", "babysit", "outcomes"}."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tool", default="all", help=f"comma-separated, from {', '.join(TOOL_ORDER)}, or all")
    p.add_argument("--half", choices=("tuning", "reporting", "both"), default="both")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="the few cases `make test` runs (`programs.smoke_cases`)")
    p.add_argument("--only", default=None, help="comma-separated bug kinds (plus the healthy twins)")
    p.add_argument("--babysit-check", action="store_true", help="babysit also runs bs.check before training (attach_check)")
    p.add_argument("--reuse", default=None, metavar="FILE",
                   help="take the runs of the tools not asked for (plain included) from an earlier results file of the same cases")
    p.add_argument("--out", default=str(HERE / "programs_results.json"))
    p.add_argument("--verification-out", default=str(HERE / "programs_verification.json"))
    args = p.parse_args(argv)
    wanted = TOOL_ORDER if args.tool == "all" else tuple(t for t in TOOL_ORDER if t in args.tool.split(","))
    unknown = set(args.tool.split(",")) - set(TOOL_ORDER) - {"all"}
    if unknown:
        p.error(f"unknown tool(s) {sorted(unknown)}; choose from {', '.join(TOOL_ORDER)} or all")
    cases = select(args.half, args.smoke, args.only)
    outcomes: dict[str, list[dict[str, Any]]] = reused(args.reuse, [c.id for c in cases], wanted) if args.reuse else {}
    tools = tuple(dict.fromkeys(t for t in ("plain", *wanted) if t not in outcomes))  # the verification always has plain
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, initializer=_warm) as ex:
        for tool in tools:
            outcomes[tool] = list(ex.map(run_one, [(c, tool, args.babysit_check) for c in cases]))
    import peers
    from programs import ACCEPTED

    ver = verify(outcomes["plain"])
    kept = {cid for cid, r in ver.items() if r["kept"]}
    print_verification(ver)
    peer_table = peers.table(outcomes, kept, ACCEPTED)
    babysit = babysit_scores(outcomes["babysit"], kept) if "babysit" in outcomes else None
    if babysit is not None and args.half == "both" and not args.smoke:  # each half's scores as well (report the reporting half)
        for half in ("tuning", "reporting"):
            babysit[half] = babysit_scores([o for o in outcomes["babysit"] if o["half"] == half], kept)
    print_table(peer_table, babysit)
    cpu = sum(o["seconds"] for t in tools for o in outcomes[t])
    print(f"\nwall {time.perf_counter() - start:.0f} s, CPU {cpu / 60:.1f} min for {len(cases)} cases x {len(tools)} tools")
    Path(args.verification_out).write_text(json.dumps(ver, indent=1))
    result = {"verification": ver, "peers": peer_table, "babysit": babysit, "outcomes": outcomes}
    # The verification has its own file; the results file holds the scores and every run.
    Path(args.out).write_text(dump({"peers": peer_table, "babysit": babysit, "outcomes": compact(outcomes)}))
    print(f"verification: {args.verification_out}\nper-case results: {args.out}")
    return result


def run_babysit(half: str = "reporting", jobs: int = 2, out: str | None = None) -> dict[str, Any]:
    """babysit over the program-bug cases of `half`, with the plain verification: what the lead calls once the observer is merged.

    Returns `main`'s result; `result["babysit"]` has top-1, recall, error-level findings and
    learning-rate advice on the healthy twins, and the per-bug top-1.
    """
    argv = ["--tool", "babysit", "--half", half, "--jobs", str(jobs)]
    if out:
        argv += ["--out", out, "--verification-out", str(Path(out).with_suffix(".verification.json"))]
    return main(argv)


if __name__ == "__main__":
    main()
