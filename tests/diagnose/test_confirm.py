"""Root cause by experiment: the verdicts follow the accuracies' noise, and the confirmed cause is named first."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from babysit.diagnose import confirm, significance
from babysit.diagnose.findings import Finding, rank, root_causes


def _findings() -> list[Finding]:
    # Two unrelated roots: a learning-rate warning and an initialisation error, plus a symptom of the init.
    return rank([
        Finding("lr_too_low", "warning", "lr 30x too low"),
        Finding("activations_vanish", "error", "std falls 1e-4x"),
        Finding("loss_flat", "error", "flat"),
    ])  # fmt: skip


def test_candidates_are_the_distinct_roots_with_an_automatic_fix():
    assert [f.rule for f in confirm.candidates(_findings())] == ["activations_vanish", "lr_too_low"]
    no_fix = rank([Finding("input_independent", "error", "no better than zeros"), Finding("lr_too_low", "warning", "low")])
    assert [f.rule for f in confirm.candidates(no_fix)] == ["lr_too_low"]


def test_the_fix_that_raised_accuracy_most_beyond_noise_is_confirmed_and_named_first(tmp_path):
    found = _findings()
    lr, init = (f for f in found if f.rule == "lr_too_low"), (f for f in found if f.rule == "activations_vanish")
    results = [(next(init), "init he", 0.14, 1.0, "a"), (next(lr), "lr x30", 0.62, 1.0, "b")]
    experiments = confirm.judge(0.12, results, 450)
    assert [(e.rule, e.verdict) for e in experiments] == [("activations_vanish", "refuted"), ("lr_too_low", "confirmed")]
    ranked = confirm.apply(found, experiments)
    assert ranked[0].rule == "lr_too_low" and ranked[0].severity == "error" and ranked[0].confirmed
    assert "12.0% -> 62.0%" in ranked[0].title
    assert root_causes(ranked)[0].rule == "lr_too_low"
    assert next(f for f in ranked if f.rule == "activations_vanish").confirmed is False
    confirm.save(tmp_path, experiments)
    assert [e["verdict"] for e in confirm.load(tmp_path)] == ["refuted", "confirmed"]


def test_nothing_is_confirmed_when_no_fix_beats_the_noise():
    found = _findings()
    results = [(f, "change", 0.13, 0.5, "x") for f in confirm.candidates(found)]
    experiments = confirm.judge(0.12, results, 100)  # +1 point on 100 samples: noise
    assert {e.verdict for e in experiments} == {"refuted"}
    assert [f.rule for f in confirm.apply(found, experiments)] == [f.rule for f in found]


@given(st.floats(0.0, 1.0), st.lists(st.floats(0.0, 1.0), min_size=2, max_size=3), st.integers(20, 5000))
def test_at_most_one_confirmed_and_only_beyond_noise(base, accs, n):
    found = [Finding("lr_too_low", "warning", "a"), Finding("activations_vanish", "error", "b"), Finding("data_scales", "error", "c")]
    experiments = confirm.judge(base, [(f, "x", a, 0.1, "r") for f, a in zip(found, accs)], n)
    confirmed = [e for e in experiments if e.verdict == "confirmed"]
    assert len(confirmed) <= 1
    for e in experiments:
        if e.verdict != "refuted":
            assert e.val_accuracy > base
    if confirmed:
        # The first of the fixes level with the best one (not beaten by it beyond noise): the diagnosis's order breaks ties.
        top = max(e.val_accuracy for e in experiments if e.verdict != "refuted")
        level = [e for e in experiments if e.verdict != "refuted"
                 and significance.verdict(top - e.val_accuracy, significance.proportion_se(top, n, e.val_accuracy, n), 0.0) != "pass"]
        assert confirmed[0] is level[0]


def test_a_damaged_or_foreign_confirm_file_reads_as_no_experiment(tmp_path):
    (tmp_path / confirm.CONFIRM_FILE).write_text("{not json", encoding="utf-8")
    assert confirm.load(tmp_path) == []
    (tmp_path / confirm.CONFIRM_FILE).write_text(json.dumps({"experiments": [{"rule": "no_such_rule", "change": "", "baseline": 0,
                                                                              "val_accuracy": 1, "verdict": "confirmed"}]}))  # fmt: skip
    assert confirm.load(tmp_path) == []
