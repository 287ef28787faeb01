import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from babysit.diagnose.kinds import KINDS, PHASES, phase_of
from babysit.diagnose.findings import SEVERITIES, Finding, findings_table, json_ready, rank


def test_finding_refuses_an_unknown_severity():
    with pytest.raises(ValueError, match="severity must be one of"):
        Finding("loss_flat", "fatal", "title")


def test_to_dict_is_strict_json_with_every_field():
    f = Finding("loss_flat", "error", "flat", evidence={"dead": (0.92, math.nan), "inf": math.inf}, lecture_rule="§1", fix="raise lr")
    d = f.to_dict()
    assert set(d) == {"rule", "severity", "title", "evidence", "lecture_rule", "fix", "phase", "first_seen", "explained_by", "confirmed"}
    assert d["phase"] == "training" and d["first_seen"] is None and d["explained_by"] is None
    assert d["evidence"] == {"dead": [0.92, "nan"], "inf": "inf"}
    json.dumps(d, allow_nan=False)  # raises if a NaN slipped through


def test_repr_names_severity_rule_and_title():
    assert repr(Finding("loss_flat", "warning", "flat")) == "Finding(warning: loss_flat: flat)"


@given(st.lists(st.tuples(st.sampled_from(SEVERITIES), st.integers(0, 1000)), max_size=30))
def test_rank_sorts_unrelated_findings_by_severity_and_keeps_production_order_within_one(items):
    findings = [Finding("overfitting", sev, f"t{i}-{n}") for i, (sev, n) in enumerate(items)]
    ranked = rank(findings)
    assert sorted(ranked, key=lambda f: f.title) == sorted(findings, key=lambda f: f.title)
    order = [SEVERITIES.index(f.severity) for f in ranked]
    assert order == sorted(order)
    for sev in SEVERITIES:
        same = [f.title for f in ranked if f.severity == sev]
        assert same == [f.title for f in findings if f.severity == sev]


@given(st.recursive(st.floats() | st.integers() | st.text(max_size=5) | st.none(), lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4), max_leaves=20))
def test_json_ready_always_gives_strict_json(value):
    json.dumps(json_ready(value), allow_nan=False)


def test_findings_table_renders_errors_first():
    console = Console(record=True, width=200)
    console.print(findings_table([Finding("overfitting", "info", "minor thing"), Finding("class_missing", "error", "broken thing", fix="do X")]))
    text = console.export_text()
    assert text.index("broken thing") < text.index("minor thing") and "do X" in text


def test_findings_table_prints_user_strings_as_text():
    from rich.console import Console

    from babysit.diagnose.findings import Finding, findings_table

    console = Console(record=True, width=200)
    console.print(findings_table([Finding("class_missing", "error", "class [bold]cat[/] has no samples", fix="add [red]cats[/]")]))
    text = console.export_text()
    assert "class [bold]cat[/] has no samples" in text and "add [red]cats[/]" in text


PAIRS = sorted((kind.id, symptom) for kind in KINDS.values() for symptom in kind.explains)


def test_the_causal_table_is_acyclic_and_names_only_declared_kinds():
    def reaches(a: str, b: str, seen: frozenset = frozenset()) -> bool:
        return any(s == b or (s not in seen and reaches(s, b, seen | {s})) for s in KINDS[a].explains)

    assert len(PAIRS) > 50
    assert not [c for c in KINDS if reaches(c, c)]
    assert {s for k in KINDS.values() for s in k.explains} <= set(KINDS)  # an undeclared symptom would be a KeyError above
    assert {phase_of(r) for pair in PAIRS for r in pair} <= set(PHASES)


@given(
    st.sampled_from(PAIRS),
    st.sampled_from(SEVERITIES),
    st.sampled_from(SEVERITIES),
    st.lists(st.sampled_from(sorted({r for p in PAIRS for r in p})), max_size=6),
    st.randoms(),
)
def test_a_cause_ranks_before_every_symptom_it_explains(pair, sev_cause, sev_symptom, others, rnd):
    cause, symptom = pair
    found = [Finding(cause, sev_cause, "c", first_seen=rnd.randint(0, 9)), Finding(symptom, sev_symptom, "s", first_seen=rnd.randint(0, 9))]
    found += [Finding(r, rnd.choice(SEVERITIES), r) for r in others]
    rnd.shuffle(found)
    ranked = rank(found)
    assert len(ranked) == len(found)
    rules = [f.rule for f in ranked]
    assert rules.index(cause) < rules.index(symptom)
    sym = ranked[rules.index(symptom)]
    assert sym.explained_by is not None and rules.index(sym.explained_by) < rules.index(symptom)


def test_rank_attaches_symptoms_to_their_cause_and_shows_it():
    found = [
        Finding("relu_died_in_training", "error", "92% of layer 2 died", first_seen=300),
        Finding("loss_explodes", "error", "loss NaN in epoch 2", first_seen=2),
        Finding("lr_too_high", "warning", "range test: lr 10 is above the steepest descent"),
        Finding("overfitting", "info", "gap 0.08"),
    ]
    ranked = rank(found)
    assert [f.rule for f in ranked] == ["lr_too_high", "loss_explodes", "relu_died_in_training", "overfitting"]
    assert [f.explained_by for f in ranked] == [None, "lr_too_high", "lr_too_high", None]
    console = Console(record=True, width=250)
    console.print(findings_table(found))
    assert console.export_text().count("explained by: lr_too_high") == 2
    # A stale explanation from an earlier ranking is dropped when its cause is absent.
    assert rank([ranked[2]])[0].explained_by is None


def test_rank_orders_roots_by_phase_before_severity():
    ranked = rank([Finding("loss_flat", "error", "flat"), Finding("init_symmetry", "error", "zero"), Finding("data_leak", "warning", "leak")])
    assert [f.rule for f in ranked] == ["data_leak", "init_symmetry", "loss_flat"]
    assert ranked[2].explained_by == "init_symmetry"


def test_finding_refuses_an_unknown_phase():
    with pytest.raises(ValueError, match="phase must be one of"):
        Finding("loss_flat", "error", "t", phase="deploy")


def test_root_causes_follow_an_error_symptom_to_its_warning_cause():
    from babysit.diagnose.findings import root_causes

    ranked = rank([
        Finding("loss_explodes", "error", "loss exploded"),
        Finding("lr_too_high", "warning", "lr 10x too high"),
        Finding("overfitting", "warning", "gap 0.2"),
    ])  # fmt: skip
    assert [f.rule for f in root_causes(ranked)] == ["lr_too_high"]
    assert [f.rule for f in root_causes(ranked, "warning")] == ["lr_too_high", "overfitting"]
    assert root_causes(rank([Finding("overfitting", "info", "gap 0.08")])) == []
