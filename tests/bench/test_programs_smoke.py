"""The program-bug family of the diagnosis benchmark: its cases, and its seam on the smoke subset with plain PyTorch and both peers."""

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "diagnosis"

# The benchmark's scripts import each other by their file names (as `python bench/diagnosis/run_programs.py` does).
sys.path.insert(0, str(BENCH))
programs = importlib.import_module("programs")
run_programs = importlib.import_module("run_programs")
peers = importlib.import_module("peers")
scripts = importlib.import_module("programs.scripts")


def test_the_family_has_the_bugs_architectures_and_ways_the_issue_asks_for():
    every = programs.all_cases()
    bugged = [c for c in every if not c.healthy]
    assert len(programs.BUGS) >= 15 and {c.bug for c in bugged} == set(programs.BUGS) == set(programs.ACCEPTED)
    assert {c.arch for c in every} == {"mlp", "convnet", "gru", "transformer"}
    assert {c.data for c in every} >= {"mnist1d", "digits", "spiral", "tabular"} and len({c.optimizer for c in every}) >= 3
    assert {c.way for c in every} == {"loop", "fit", "lightning"}
    ids = {c.id for c in every}
    assert len(ids) == len(every) and all(c.twin().id in ids for c in bugged)  # every bug case has its healthy twin
    assert all(programs.BUGS[c.bug].applies(c.twin()) for c in bugged)
    # One split by (architecture, seed): no such pair is in both halves, and both halves hold every bug kind.
    halves = {}
    for c in every:
        halves.setdefault((c.arch, c.seed), set()).add(c.half)
    assert all(len(h) == 1 for h in halves.values())
    for half in ("tuning", "reporting"):
        assert {c.bug for c in bugged if c.half == half} == set(programs.BUGS)
    # Transfer learning (a pretrained body frozen on purpose) is a healthy twin, beside every frozen-by-mistake case.
    frozen = [c for c in every if c.bug == programs.FROZEN_ON_PURPOSE]
    assert frozen and {c.family for c in frozen} == {c.family for c in bugged if c.bug == "body_frozen"}


def test_each_peer_cause_table_names_only_declared_bugs_and_checks():
    for tool, causes in peers.CAUSES.items():
        assert set(causes) <= set(programs.BUGS), tool
    import torchtest2

    assert set().union(*peers.TORCHTEST2_CAUSES.values()) <= set(torchtest2.CHECKS)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("programs")
    result = run_programs.main(
        ["--smoke", "--tool", "plain,torchtest2,torch_audit", "--jobs", "1", "--out", str(out / "r.json"), "--verification-out", str(out / "v.json")]
    )
    return result, out


def test_smoke_seam_runs_plain_and_both_peers(smoke):
    result, out = smoke
    saved = json.loads((out / "r.json").read_text())
    assert set(saved["outcomes"]) == {"plain", "torchtest2", "torch_audit"}
    n = len(programs.smoke_cases())
    for tool, rows in result["outcomes"].items():
        assert len(rows) == n and not [r["id"] for r in rows if "error" in r], tool
        assert all(r["seconds"] > 0 and len(r["history"]) == scripts.EPOCHS for r in rows), tool
    assert all(len(r["val_curve"]) == scripts.EPOCHS for r in saved["outcomes"]["plain"])  # the file keeps the plain curves
    # What each peer's check tests, on the bugs it can and cannot see (peers.py's tables).
    table = result["peers"]
    assert table["torchtest2"]["per_bug"]["detached_body"]["cause"] == 1  # gradient_flow names the cut
    assert table["torchtest2"]["per_bug"]["zero_grad_before_step"]["cause"] == 0  # it never sees the loop
    assert table["torch_audit"]["per_bug"]["zero_grad_before_step"]["cause"] == 1  # TA104 after the step
    assert not table["torchtest2"]["false_alarms"] and not table["torch_audit"]["false_alarms"]


def test_smoke_verification_holds(smoke):
    result, out = smoke
    ver = json.loads((out / "v.json").read_text())
    assert ver == result["verification"]
    for case_id, row in ver.items():
        assert row["kept"], (case_id, row)  # the healthy twins learn, every bug measurably hurts
        if row["bug"] == "healthy":
            assert row["accuracy"] >= run_programs.FLOORS[row["data"]]
        else:
            assert not row["finite"] or row["healthy_accuracy"] - row["accuracy"] > row["margin"] >= run_programs.MIN_MARGIN


def check_babysit_on_smoke(tmp_path: Path) -> dict:
    """babysit's assertions on the smoke subset, for the lead to call once the program observer is merged.

    Each bug case's first root cause names its bug (`programs.ACCEPTED`), no healthy twin gets an
    error-level finding, and no finding on a healthy twin moves the learning rate.
    """
    result = run_programs.main(
        ["--smoke", "--tool", "babysit", "--jobs", "1", "--out", str(tmp_path / "b.json"), "--verification-out", str(tmp_path / "bv.json")]
    )
    scores = result["babysit"]
    assert not scores["errors"], scores["errors"]
    assert scores["top1"] == 1.0, scores["confusion"]
    assert not scores["error_on_healthy"] and not scores["lr_advice_on_healthy"], scores
    return scores
