"""The diagnosis benchmark's harness on its 20-case smoke subset (the full run is slow-marked)."""

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "diagnosis"


# The benchmark's scripts import each other by their file names (as `python bench/diagnosis/run.py` does).
sys.path.insert(0, str(BENCH))
cases = importlib.import_module("cases")
run = importlib.import_module("run")


def test_the_benchmark_has_the_cases_the_issue_asks_for():
    every = cases.all_cases()
    faulty = [c for c in every if c.fault != "healthy"]
    assert len(faulty) >= 200 and sum(c.fault == "healthy" for c in every) >= 60
    assert len({c.fault for c in faulty}) >= 15 and {c.arch for c in every} == set(cases.ARCHITECTURES)
    assert {c.data for c in every} >= {"mnist1d", "digits", "spiral", "tabular"} and len({c.optimizer for c in every}) >= 4
    # One split by (architecture, seed): no such pair is in both halves, and both halves have every fault.
    halves = {}
    for c in every:
        halves.setdefault((c.arch, c.seed), set()).add(c.half)
    assert all(len(h) == 1 for h in halves.values())
    for half in ("tuning", "reporting"):
        assert {c.fault for c in every if c.half == half} == set(cases.FAULTS) | set(cases.COVERAGE) | set(cases.HEALTHY_EXTRA) | {"healthy"}


def test_smoke_subset_runs_and_names_most_faults_first(tmp_path):
    out = tmp_path / "smoke.json"
    scores = run.main(["--smoke", "--jobs", "1", "--out", str(out)])["smoke"]
    saved = json.loads(out.read_text())
    assert len(saved["cases"]) == 20 and saved["scores"]["smoke"]["cases"] == 20
    assert all("findings" in r and r["seconds"] > 0 for r in saved["cases"])
    named = round(scores["top1"] * scores["faulty"])
    assert named >= SMOKE_TOP1_BAR * scores["faulty"], scores["confusion"]
    assert scores["false_alarms"] <= 0.34, scores["false_alarm_rules"]


# Measured on the smoke subset: 14 of 15 broken set-ups named top-1 (no false alarm on the 5 healthy ones);
# the bar is 12 of 15, a little below it for seed and platform noise.
SMOKE_TOP1_BAR = 0.8


@pytest.mark.slow
def test_full_benchmark_reporting_half(tmp_path):
    scores = run.main(["--half", "both", "--jobs", "2", "--out", str(tmp_path / "full.json")])
    assert scores["reporting"]["faulty"] >= 100 and scores["reporting"]["recall"] >= scores["reporting"]["top1"]
