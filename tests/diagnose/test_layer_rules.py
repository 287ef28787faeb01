"""Probe-based rules on synthetic probes in the run-record schema (issue 4 writes the real ones)."""

import copy
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from babysit.diagnose import layer_rules
from babysit.diagnose.rules import diagnose


def probe_record(layers=None, params=None, probes=1):
    probe = {"step": 100, "epoch": 1, "layers": layers or {}, "params": params or {}}
    return {"metrics": [], "probes": [dict(copy.deepcopy(probe), step=100 * (i + 1)) for i in range(probes)], "events": [], "summary": None}


def tanh_layers(stds, saturated=0.0):
    layers = {}
    for i, s in enumerate(stds):
        layers[f"{2 * i}"] = {"type": "Linear", "act_mean": 0.0, "act_std": s * 1.1}
        layers[f"{2 * i + 1}"] = {"type": "Tanh", "act_mean": 0.0, "act_std": s, "saturated_fraction": saturated}
    return layers


def test_lecture_demo_small_init_vanishes_in_a_10_layer_tanh_net():
    # W = 0.01 N(0,1), 500 units: each layer multiplies the std by about 0.01 * sqrt(500) = 0.22.
    stds = [0.22 ** (k + 1) for k in range(10)]
    f = diagnose(probe_record(tanh_layers(stds)))
    assert [x.rule for x in f] == ["activations_vanish"] and f[0].severity == "error"
    assert f[0].evidence["ratio"] == pytest.approx(0.22 ** 9) and f[0].evidence["step"] == 100
    assert "layer 1" in f[0].title and "layer 19" in f[0].title


def test_xavier_tanh_keeps_the_std_and_raises_nothing():
    assert diagnose(probe_record(tanh_layers([0.63, 0.49, 0.42, 0.38, 0.35, 0.33, 0.31, 0.3, 0.29, 0.28]))) == []


def test_xavier_relu_halving_variance_per_layer_is_only_a_warning_after_10_layers():
    stds = [0.7 * 2 ** (-k / 2) for k in range(10)]  # ratio 2^-4.5 = 0.044
    layers = {f"{k}": {"type": "ReLU", "act_mean": 0.3, "act_std": s, "dead_fraction": 0.05} for k, s in enumerate(stds)}
    f = layer_rules.activation_scale(layers)
    assert [(x.rule, x.severity) for x in f] == [("activations_vanish", "warning")]


def test_exploding_activations():
    layers = {f"{k}": {"type": "ReLU", "act_std": 8.0 ** k, "dead_fraction": 0.0} for k in range(6)}
    f = layer_rules.activation_scale(layers)
    assert [(x.rule, x.severity) for x in f] == [("activations_explode", "error")]


@pytest.mark.parametrize("dead, severity", [(0.15, None), (0.5, "warning"), (0.95, "error")])
def test_dead_relu_thresholds_tolerate_the_lectures_10_to_20_percent(dead, severity):
    layers = {"1": {"type": "ReLU", "act_std": 0.5, "dead_fraction": 0.02}, "3": {"type": "ReLU", "act_std": 0.5, "dead_fraction": dead}}
    f = diagnose(probe_record(layers), rules=["dead_relu"])
    assert [x.severity for x in f] == ([severity] if severity else [])
    if f:
        assert "layer 3" in f[0].title and f[0].evidence["dead_fraction"] == {"1": 0.02, "3": dead}


@pytest.mark.parametrize("saturated, severity", [(0.01, None), (0.3, "warning"), (0.8, "error")])
def test_saturated_tanh(saturated, severity):
    f = diagnose(probe_record(tanh_layers([0.9, 0.9], saturated=saturated)), rules=["saturation"])
    assert [x.severity for x in f] == ([severity] if severity else [])


def params(rel_grads, ratio=1e-3):
    out = {}
    for i, g in enumerate(rel_grads):
        out[f"{2 * i}.weight"] = {"grad_norm": g * 2.0, "weight_norm": 2.0, "update_ratio": ratio}
        out[f"{2 * i}.bias"] = {"grad_norm": 1.0, "weight_norm": 0.0, "update_ratio": 50.0}  # biases start at 0: ignored
    return out


def test_gradients_vanishing_towards_the_input():
    f = diagnose(probe_record(params=params([1e-7, 1e-5, 1e-3, 1e-2])), rules=["gradient_flow"])
    assert [(x.rule, x.severity) for x in f] == [("gradients_vanish", "error")]
    assert f[0].evidence["relative_grad"]["0.weight"] == pytest.approx(1e-7)


def test_gradients_exploding_towards_the_input():
    f = diagnose(probe_record(params=params([10.0, 1e-1, 1e-2])), rules=["gradient_flow"])
    assert [(x.rule, x.severity) for x in f] == [("gradients_explode", "warning")]


def test_even_gradients_and_healthy_updates_raise_nothing():
    assert diagnose(probe_record(params=params([2e-3, 1e-3, 3e-3]), probes=3)) == []


@pytest.mark.parametrize("ratio, rule, severity", [(1.0, "update_ratio_high", "error"), (0.05, "update_ratio_high", "warning"),
                                                   (3e-6, "update_ratio_low", "warning"), (1e-7, "update_ratio_low", "error")])
def test_update_to_weight_ratio_far_from_1e_3(ratio, rule, severity):
    f = diagnose(probe_record(params=params([1e-3, 1e-3], ratio=ratio), probes=3), rules=["update_ratio"])
    assert [(x.rule, x.severity) for x in f] == [(rule, severity)]
    factor = ratio / 1e-3 if ratio > 1e-3 else 1e-3 / ratio
    assert f"{factor:.0f}x" in f[0].fix


def test_update_ratio_uses_the_median_over_probes():
    record = probe_record(params=params([1e-3], ratio=1e-3), probes=5)
    record["probes"][0]["params"]["0.weight"]["update_ratio"] = 10.0  # one early spike
    assert diagnose(record, rules=["update_ratio"]) == []


@pytest.mark.parametrize("losses, kept", [
    ([2.3, 1.9, 1.7, 1.75, 1.5, 1.4], False),   # still making new lows in its second half: the rate works
    ([2.3, 1.2, 1.1, 1.15, 1.12, 1.16], True),  # stopped falling and bounces: the ratio's warning stands
    ([2.3, 2.0], True),                         # too short to tell: the ratio speaks alone
])  # fmt: skip
def test_a_high_update_ratio_warning_asks_to_lower_the_rate_only_when_the_curve_agrees(losses, kept):
    record = probe_record(params=params([1e-3], ratio=0.05), probes=5)
    record["metrics"] = [{"epoch": i + 1, "train_loss": v} for i, v in enumerate(losses)]
    found = diagnose(record, rules=["update_ratio"])
    assert [f.rule for f in found] == (["update_ratio_high"] if kept else [])
    record = probe_record(params=params([1e-3], ratio=0.5), probes=5)  # error level: kept whatever the curve
    record["metrics"] = [{"epoch": i + 1, "train_loss": v} for i, v in enumerate(losses)]
    assert [f.severity for f in diagnose(record, rules=["update_ratio"])] == ["error"]


def _annealed(ratio_at_peak, train_accuracy, shares=(1.0, 0.5, 0.1, 0.01)):
    """A run whose probes, one per epoch, saw updates of `ratio_at_peak` x the epoch's share of the peak rate (a decay schedule)."""
    record = probe_record(params=params([1e-3], ratio=ratio_at_peak), probes=len(shares))
    for i, (probe, share) in enumerate(zip(record["probes"], shares)):
        probe["epoch"] = i + 1
        probe["params"]["0.weight"]["update_ratio"] = ratio_at_peak * share
    losses = [2.3, 1.2, 1.3, 1.25]  # bounced: the curve does not vouch for the rate
    record["metrics"] = [{"epoch": i + 1, "train_loss": v, "train_accuracy": train_accuracy, "lr": 1e-2 * share}
                         for i, (v, share) in enumerate(zip(losses, shares))]  # fmt: skip
    return record


def test_updates_a_decay_schedule_shrank_are_judged_at_the_peak_rate():
    # Healthy updates at the peak rate (1e-3), shrunk 10-100x by the schedule's end: raising the rate is not the fix.
    assert diagnose(_annealed(1e-3, 0.5), rules=["update_ratio"]) == []
    # Far too small even at the peak rate: still an error, and the title says it was judged there.
    found = diagnose(_annealed(1e-7, 0.3), rules=["update_ratio"])
    assert [(f.rule, f.severity) for f in found] == [("update_ratio_low", "error")] and "at the peak learning rate" in found[0].title
    assert found[0].evidence["update_ratio_at_peak_lr"]["0.weight"] == pytest.approx(1e-7)


def test_a_run_that_fit_its_training_set_is_not_told_to_raise_its_rate():
    # A final run of 2,000 epochs (digits 16x16 in bench/bench_auto.py) ends with updates of 1e-6 of its weights:
    # it fit its training set at the rate it had, so its gradients, not its rate, are small.
    assert diagnose(_annealed(1e-6, 1.0, shares=(1.0, 1.0, 1.0, 1.0)), rules=["update_ratio"]) == []
    assert [f.rule for f in diagnose(_annealed(1e-6, 0.3, shares=(1.0, 1.0, 1.0, 1.0)), rules=["update_ratio"])] == ["update_ratio_low"]


def test_frozen_layers_with_zero_updates_are_not_flagged():
    assert layer_rules.update_ratios({"0.weight": 0.0, "2.weight": 1e-3}) == []


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=4))
def test_layer_rules_tolerate_any_numbers(values):
    layers = {n: {"type": "ReLU", "act_std": v, "dead_fraction": v, "saturated_fraction": v} for n, v in values.items()}
    ps = {f"{n}.weight": {"grad_norm": v, "weight_norm": abs(v) if math.isfinite(v) else v, "update_ratio": v} for n, v in values.items()}
    for f in [*layer_rules.activation_scale(layers), *layer_rules.dead_units(layers), *layer_rules.saturated_units(layers),
              *layer_rules.gradient_flow(ps), *layer_rules.update_ratios({n: p["update_ratio"] for n, p in ps.items()})]:
        assert f.severity in ("error", "warning")


def test_the_activations_plotted_include_another_librarys_nonlinearity_marked_in_the_record():
    """A transformer's GELUActivation (transformers.activations) is marked by the probes; its plots and rules read the mark,
    and a record from before the mark is still read by type name."""
    layers = {"ff.dense": {"type": "Linear"}, "ff.act": {"type": "GELUActivation", "activation": True}, "act": {"type": "ReLU"},
              "norm": {"type": "LayerNorm"}}  # fmt: skip
    assert sorted(layer_rules.activation_layers(layers)) == ["act", "ff.act"]
