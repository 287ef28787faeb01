"""Each finding kind is declared once (diagnose.kinds): every table is built from it, and every fix it carries holds."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from babysit.config import SECTIONS
from babysit.diagnose.findings import Finding, rank, worst_severity
from babysit.diagnose.kinds import KINDS, REPAIRS, UNKNOWN, declare, explains, kind_of, training_twin
from babysit.report.run_report import RunReport
from babysit.train.record import RunRecord

ROOT = Path(__file__).resolve().parents[2]
CONFIG_KEYS = {f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in fields(cls)}
# How a fix text moves the learning rate, by the words it uses.
LOWERS = re.compile(r"lower (the )?learning rate|learning rate \S+ lower|lower train\.lr")
RAISES = re.compile(r"raise (the )?learning rate|learning rate \S+ higher|raise train\.lr")
MENTIONS_LR = re.compile(r"learning rate|train\.lr\b|\blr\b")


def test_finding_refuses_an_undeclared_kind():
    with pytest.raises(ValueError, match="no finding kind 'dead_relu' is declared"):
        Finding("dead_relu", "error", "92% dead")


def test_a_kind_is_declared_once():
    with pytest.raises(ValueError, match="declared twice"):
        declare("loss_flat", "training", "again", "again")
    with pytest.raises(ValueError, match="declared twice"):
        declare(UNKNOWN, "training", "a reserved id", "none")


def test_a_finding_takes_its_phase_and_fix_from_its_kind_unless_given():
    f = Finding("gradients_exploded_in_training", "error", "g")
    assert f.phase == "training" and f.fix == KINDS["gradients_exploded_in_training"].fix
    assert Finding("loss_flat", "error", "flat", fix="raise it 30x").fix == "raise it 30x"
    assert Finding("data_leak", "warning", "leak").phase == "data"


def test_a_finding_read_back_with_an_undeclared_kind_reads_as_unknown():
    saved = Finding("loss_flat", "error", "flat").to_dict() | {"rule": "labels_unlearnable", "explained_by": "too_few_steps"}
    f = Finding.from_dict(saved)
    assert f.rule == UNKNOWN and f.evidence["recorded_rule"] == "labels_unlearnable" and f.explained_by is None
    ranked = rank([f, Finding("loss_flat", "error", "flat")])  # it ranks beside the others, explaining nothing
    assert [g.rule for g in ranked] == [UNKNOWN, "loss_flat"] and ranked[1].explained_by is None
    with pytest.raises(TypeError):
        Finding.from_dict({"severity": "error", "title": "no rule"})
    with pytest.raises(TypeError):
        Finding.from_dict(["loss_flat"])


def test_every_declared_link_repair_and_twin_names_a_declared_kind():
    for kind in KINDS.values():
        assert kind.explains <= set(KINDS), kind.id
        assert kind.repair is None or kind.repair in REPAIRS
        if kind.in_training is not None:
            twin = kind_of(kind.in_training)
            assert twin.phase == "training" and kind.phase == "init"
            assert training_twin(kind.id) == twin.id
    assert explains("lr_too_high", "loss_explodes") and not explains("loss_explodes", "lr_too_high")


@pytest.mark.parametrize("kind", sorted(KINDS), ids=str)
def test_every_fix_names_only_config_keys_that_exist(kind):
    # `section.key` as a config key; `model.eval()` is a method call, not a key.
    named = set(re.findall(r"\b(?:data|model|train|watch)\.[a-z_0-9]+\b(?!\()", KINDS[kind].fix))
    assert named <= CONFIG_KEYS, f"{kind}'s fix names {sorted(named - CONFIG_KEYS)}, which no config has"


@pytest.mark.parametrize("kind", sorted(KINDS), ids=str)
def test_no_fix_points_the_learning_rate_the_wrong_way(kind):
    k = KINDS[kind]
    text = k.fix.lower()
    if k.lr is None:
        assert not MENTIONS_LR.search(text), f"{kind} is not a learning-rate fault, but its fix speaks of the learning rate: {k.fix!r}"
    if k.lr == "lower":
        assert LOWERS.search(text) and not RAISES.search(text), k.fix
    if k.lr == "raise":
        assert RAISES.search(text) and not LOWERS.search(text), k.fix
    if k.lr == "set":
        assert "train.lr" in text and not LOWERS.search(text) and not RAISES.search(text), k.fix
    # Repairs move the rate the way the fix says.
    if k.repair == "lr_down":
        assert k.lr in ("lower", "set")
    if k.repair == "lr_up":
        assert k.lr in ("raise", "set")


def test_gradient_clipping_is_named_by_its_key_not_the_weight_max_norm():
    fix = KINDS["gradients_exploded_in_training"].fix
    assert "train.clip_grad_norm" in fix and "train.max_norm" not in fix


def test_a_run_status_is_the_worst_severity_over_all_findings():
    # A warning-level cause ranks first, the error it explains second: the run is still an error.
    findings = rank([Finding("loss_explodes", "error", "loss NaN in epoch 2"), Finding("lr_too_high", "warning", "lr 10x too high")])
    assert findings[0].severity == "warning"
    report = RunReport(RunRecord(Path("r"), {}, {}), findings)
    assert report.status == "error"
    assert worst_severity([]) == "ok" and worst_severity([Finding("overfitting", "info", "gap")]) == "info"


def test_the_readme_table_lists_every_kind():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## What the diagnosis catches") : readme.index("## How well the diagnosis works")]
    missing = [k for k in KINDS if f"`{k}`" not in table]
    assert not missing, f"README's table of what the diagnosis catches lacks {missing}"


def test_a_loss_far_above_ln_c_is_never_explained_by_a_signal_that_vanishes():
    # A vanishing or dead signal leaves the scores at the head's bias (loss near ln C): a residual net at N(0, 3)
    # whose norms shrink a blown-up stream reads as 'vanishing', but its high initial loss is the scale fault itself.
    ranked = rank([Finding("activations_vanish", "warning", "std shrinks"), Finding("initial_loss_high", "error", "loss 40 vs ln 10")])
    assert [f.rule for f in ranked if f.explained_by is None] == ["initial_loss_high", "activations_vanish"]
    assert not explains("dead_relu_at_init", "initial_loss_high") and not explains("activations_vanish", "initial_loss_high")
    # inputs offset far from 0 push every pre-activation one way: they explain the high loss and the dead units
    offset = rank([Finding("data_not_centred", "error", "mean 20 std"), Finding("dead_relu_at_init", "warning", "dead"),
                   Finding("initial_loss_high", "error", "high")])
    assert {f.rule: f.explained_by for f in offset} == {"data_not_centred": None, "dead_relu_at_init": "data_not_centred",
                                                        "initial_loss_high": "data_not_centred"}
    assert offset[0].rule == "data_not_centred"
