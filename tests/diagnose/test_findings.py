import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from babysit.diagnose.findings import SEVERITIES, Finding, findings_table, json_ready, rank


def test_finding_refuses_an_unknown_severity():
    with pytest.raises(ValueError, match="severity must be one of"):
        Finding("x", "fatal", "title")


def test_to_dict_is_strict_json_with_every_field():
    f = Finding("dead_relu", "error", "92% dead", evidence={"dead": (0.92, math.nan), "inf": math.inf}, lecture_rule="§1", fix="lower lr")
    d = f.to_dict()
    assert set(d) == {"rule", "severity", "title", "evidence", "lecture_rule", "fix"}
    assert d["evidence"] == {"dead": [0.92, "nan"], "inf": "inf"}
    json.dumps(d, allow_nan=False)  # raises if a NaN slipped through


def test_repr_names_severity_rule_and_title():
    assert repr(Finding("loss_flat", "warning", "flat")) == "Finding(warning: loss_flat: flat)"


@given(st.lists(st.tuples(st.sampled_from(SEVERITIES), st.integers(0, 1000)), max_size=30))
def test_rank_sorts_by_severity_and_keeps_production_order_within_one(items):
    findings = [Finding(f"r{i}", sev, f"t{n}") for i, (sev, n) in enumerate(items)]
    ranked = rank(findings)
    assert sorted(ranked, key=lambda f: f.rule) == sorted(findings, key=lambda f: f.rule)
    order = [SEVERITIES.index(f.severity) for f in ranked]
    assert order == sorted(order)
    for sev in SEVERITIES:
        same = [f.rule for f in ranked if f.severity == sev]
        assert same == [f.rule for f in findings if f.severity == sev]


@given(st.recursive(st.floats() | st.integers() | st.text(max_size=5) | st.none(), lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4), max_leaves=20))
def test_json_ready_always_gives_strict_json(value):
    json.dumps(json_ready(value), allow_nan=False)


def test_findings_table_renders_errors_first():
    console = Console(record=True, width=200)
    console.print(findings_table([Finding("a", "info", "minor thing"), Finding("b", "error", "broken thing", fix="do X")]))
    text = console.export_text()
    assert text.index("broken thing") < text.index("minor thing") and "do X" in text


def test_findings_table_prints_user_strings_as_text():
    from rich.console import Console

    from babysit.diagnose.findings import Finding, findings_table

    console = Console(record=True, width=200)
    console.print(findings_table([Finding("class_missing", "error", "class [bold]cat[/] has no samples", fix="add [red]cats[/]")]))
    text = console.export_text()
    assert "class [bold]cat[/] has no samples" in text and "add [red]cats[/]" in text
