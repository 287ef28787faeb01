"""Diagnosis rules on synthetic run records (the run-record schema of issue 4) and on a real run."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import babysit as bs
from babysit.diagnose.record import RunView, run_view
from babysit.diagnose.rules import RULES, diagnose
from babysit.errors import DataError


def record(train_loss, train_acc, val_acc=None, val_loss=None, lr=1e-3, status="completed", stop_reason="", probes=()):
    n = len(train_loss)
    val_acc = val_acc if val_acc is not None else train_acc
    val_loss = val_loss if val_loss is not None else train_loss
    metrics = [
        {"epoch": i + 1, "step": 10 * (i + 1), "train_loss": train_loss[i], "train_accuracy": train_acc[i],
         "val_loss": val_loss[i], "val_accuracy": val_acc[i], "lr": lr, "seconds": 0.1}
        for i in range(n)
    ]
    return {"config": {}, "env": {}, "metrics": metrics, "probes": list(probes), "events": [],
            "summary": {"status": status, "stop_reason": stop_reason, "test_accuracy": val_acc[-1] if n else None}}


def rules_of(findings):
    return [f.rule for f in findings]


HEALTHY = record([1.8, 0.9, 0.55, 0.4, 0.31, 0.26], [0.45, 0.75, 0.85, 0.89, 0.92, 0.94], [0.7, 0.82, 0.86, 0.89, 0.9, 0.91])


def test_healthy_curves_raise_nothing():
    assert diagnose(HEALTHY) == []


def test_nan_loss_is_an_explosion_naming_the_epoch():
    f = diagnose(record([2.3, 1.9, math.nan], [0.1, 0.3, 0.1]))
    assert f[0].rule == "loss_explodes" and f[0].severity == "error" and "epoch 3" in f[0].title


def test_loss_rising_past_3x_its_start_is_an_explosion():
    f = diagnose(record([2.3, 4.0, 7.5], [0.1, 0.1, 0.1]))
    assert f[0].rule == "loss_explodes" and "7.5" in f[0].title


def test_a_run_stopped_as_diverged_is_an_explosion_with_its_reason():
    f = diagnose(record([2.3], [0.1], status="diverged", stop_reason="loss became nan at step 4"))
    assert rules_of(f) == ["loss_explodes"] and "step 4" in f[0].title


def test_flat_loss_means_learning_rate_too_low():
    # lr = 1e-7: the loss creeps down by 1e-4 per epoch and accuracy stays at chance.
    f = diagnose(record([2.3030, 2.3029, 2.3028, 2.3027, 2.3026], [0.1] * 5, lr=1e-7))
    assert f[0].rule == "loss_flat" and f[0].severity == "error"
    assert f[0].evidence["lr"] == 1e-7 and f[0].evidence["relative_drop"] < 0.001
    assert "raise the learning rate" in f[0].fix


def test_a_converged_flat_loss_is_not_flagged():
    assert "loss_flat" not in rules_of(diagnose(record([0.02, 0.019, 0.0185, 0.018], [0.995] * 4)))


def test_flat_then_sudden_drop_means_bad_init():
    f = diagnose(record([2.30, 2.30, 2.29, 2.29, 1.6, 0.9, 0.5], [0.1, 0.1, 0.11, 0.12, 0.45, 0.7, 0.85]))
    assert f[0].rule == "flat_then_drop" and f[0].evidence["flat_epochs"] == 4


def test_a_drop_spread_over_two_epochs_after_a_flat_stretch_is_still_sudden():
    # six ReLU layers at N(0, 0.07), momentum 0.9: flat for five epochs, then down 15% and 16% in the next two
    losses = [2.303, 2.302, 2.297, 2.295, 2.263, 1.925, 1.612, 1.164, 0.971]
    f = diagnose(record(losses, [0.1, 0.1, 0.1, 0.15, 0.15, 0.26, 0.39, 0.57, 0.68]))
    assert "flat_then_drop" in rules_of(f) and next(x for x in f if x.rule == "flat_then_drop").evidence["flat_epochs"] == 5


def test_a_slow_slide_after_a_flat_stretch_is_not_a_sudden_drop():
    # a low rate: flat, then 5% an epoch
    f = diagnose(record([2.303, 2.302, 2.301, 2.2, 2.09, 1.99, 1.89], [0.1, 0.1, 0.1, 0.15, 0.2, 0.25, 0.3]))
    assert "flat_then_drop" not in rules_of(f)


def test_fast_drop_then_bouncing_plateau_means_learning_rate_too_high():
    f = diagnose(record([2.3, 1.25, 1.2, 1.26, 1.19, 1.27, 1.21, 1.25], [0.2, 0.55, 0.57, 0.55, 0.58, 0.54, 0.57, 0.56]))
    assert f[0].rule == "plateau" and "lower the learning rate" in f[0].fix


def test_a_slow_descent_that_levels_off_is_not_the_too_high_plateau():
    # a linear head trained on a frozen body: 15% down over six epochs, then level with one bump
    losses = [0.678, 0.631, 0.607, 0.599, 0.585, 0.574, 0.585, 0.613, 0.610, 0.594, 0.585, 0.573]
    f = diagnose(record(losses, [0.59, 0.6, 0.62, 0.63, 0.64, 0.63, 0.64, 0.66, 0.65, 0.63, 0.65, 0.65]))
    assert "plateau" not in rules_of(f)


def test_a_large_train_val_gap_is_overfitting():
    f = diagnose(record([1.0, 0.5, 0.2, 0.05], [0.7, 0.85, 0.95, 0.99], val_acc=[0.65, 0.72, 0.74, 0.73], val_loss=[1.0, 0.9, 1.0, 1.3]))
    assert rules_of(f) == ["overfitting"] and f[0].severity == "warning"
    assert f[0].evidence["gap"] == pytest.approx(0.26) and "val loss rose" in f[0].title


def test_a_small_gap_is_only_an_info():
    f = diagnose(record([1.0, 0.5, 0.3, 0.25], [0.7, 0.85, 0.9, 0.93], val_acc=[0.68, 0.8, 0.84, 0.84]))
    assert [(x.rule, x.severity) for x in f] == [("overfitting", "info")]


def test_no_gap_low_accuracy_and_a_stalled_loss_is_underfitting():
    f = diagnose(record([2.0, 1.5, 1.32, 1.31, 1.305], [0.3, 0.5, 0.55, 0.56, 0.56], val_acc=[0.3, 0.5, 0.55, 0.55, 0.56]))
    assert rules_of(f) == ["underfitting"] and "capacity" in f[0].fix


def test_train_accuracy_far_below_val_means_too_much_regularization():
    f = diagnose(record([5.1, 5.0, 4.6, 4.2], [0.1, 0.11, 0.12, 0.14], val_acc=[0.2, 0.23, 0.27, 0.29]))
    assert f[0].rule == "regularization_too_strong" and "dropout" in f[0].fix


def test_rules_run_in_registry_order_and_can_be_selected():
    broken = record([2.3030, 2.3029, 2.3028, 2.3027], [0.1] * 4)
    assert rules_of(diagnose(broken, rules=["overfitting"])) == []
    assert rules_of(diagnose(broken, rules=["loss_flat"])) == ["loss_flat"]
    with pytest.raises(bs.ConfigError, match="did you mean 'loss_flat'"):
        diagnose(broken, rules=["loss_flatt"])


def test_every_rule_is_silent_on_an_empty_record():
    for name in RULES:
        assert RULES.get(name)(RunView()) == []


finite = st.floats(0.0, 50.0)
maybe_nan = finite | st.just(math.nan) | st.just(math.inf)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.lists(maybe_nan, min_size=n, max_size=n), st.lists(st.floats(0, 1), min_size=n, max_size=n), st.lists(st.floats(0, 1), min_size=n, max_size=n))))
def test_rules_never_crash_on_arbitrary_curves(curves):
    loss, acc, val = curves
    for f in diagnose(record(loss, acc, val)):
        assert f.severity in ("error", "warning", "info") and f.title and f.fix


@settings(max_examples=60, deadline=None)
@given(
    start=st.floats(1.5, 3.0), floor=st.floats(0.01, 0.3), tau=st.floats(0.5, 3.0),
    noise=st.lists(st.floats(-0.005, 0.005), min_size=10, max_size=10), gap=st.floats(0.0, 0.05),
)
def test_healthy_decaying_curves_raise_no_error(start, floor, tau, noise, gap):
    loss = [floor + (start - floor) * math.exp(-t / tau) * (1 + noise[t]) for t in range(10)]
    acc = [min(1.0, 0.95 - 0.8 * math.exp(-t / tau)) for t in range(10)]
    val = [a - gap for a in acc]
    assert [f for f in diagnose(record(loss, acc, val)) if f.severity == "error"] == []


def test_run_view_reads_dicts_records_and_fit_results(digits):
    assert run_view(HEALTHY).metrics == HEALTHY["metrics"]

    class Record:  # anything with the four parts plugs in (issue 4's RunRecord)
        metrics, probes, events, summary = HEALTHY["metrics"], [], [], {"status": "completed"}

    assert run_view(Record()).summary == {"status": "completed"}
    bs.train.seed_everything(0)
    result = bs.fit(bs.blocks.mlp(digits.input_shape, 10, hidden=(16,)), digits, bs.Recipe(epochs=2, device="cpu"), progress=False)
    view = run_view(result)
    assert len(view.metrics) == 2 and view.summary["status"] == "completed"
    assert view.series("train_loss") == result.history.series("train_loss")
    assert "RunView(epochs=2" in repr(view)


def test_a_series_read_twice_is_the_same_and_follows_new_epochs():
    view = run_view({"metrics": [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2}]})
    first = view.series("train_loss")
    first[0] = 99.0  # a caller's list is its own: the next read is not changed by it
    assert view.series("train_loss")[0] == 2.0 and math.isnan(view.series("train_loss")[1])
    view.metrics.append({"epoch": 3, "train_loss": 1.0})  # an epoch recorded after the first read
    assert view.series("train_loss")[2] == 1.0


def test_run_view_refuses_what_is_not_a_record():
    with pytest.raises(DataError, match="run record"):
        run_view({"foo": 1})
    with pytest.raises(DataError, match="cannot read a run record"):
        run_view(42)


def test_a_record_without_val_loss_does_not_say_the_loss_became_nan():
    # A user's loop that logs only the train loss and accuracy: nothing about NaN, nothing about 'nan' accuracy.
    metrics = [{"epoch": e + 1, "train_loss": 2.3 - 0.3 * e, "train_accuracy": 0.2 + 0.1 * e} for e in range(5)]
    found = bs.diagnose({"metrics": metrics})
    assert not [f for f in found if f.rule == "loss_explodes"] and not [f for f in found if "nan" in f.title.lower()]
    # A real NaN in the logged train loss is still caught.
    metrics[3]["train_loss"] = float("nan")
    assert "epoch 4" in next(f for f in bs.diagnose({"metrics": metrics}) if f.rule == "loss_explodes").title


def test_a_flat_loss_without_accuracies_is_reported_without_a_nan_accuracy():
    found = bs.diagnose({"metrics": [{"epoch": e + 1, "train_loss": 2.302 - 1e-4 * e} for e in range(5)]})
    flat = next(f for f in found if f.rule == "loss_flat")
    assert "nan" not in flat.title and "accuracy" not in flat.title


@pytest.mark.parametrize("key, suggestion", [("train_acc", "train_accuracy"), ("val_los", "val_loss"), ("val_acc", "val_accuracy"), ("loss", "train_loss")])
def test_misspelled_metric_names_are_rejected_with_a_suggestion(key, suggestion):
    with pytest.raises(bs.errors.DataError, match=f"did you mean '{suggestion}'"):
        bs.diagnose({"metrics": [{"epoch": 1, key: 0.5}]})


def test_a_users_own_extra_metric_is_ignored():
    assert bs.diagnose({"metrics": [{"epoch": 1, "train_loss": 1.0, "gpu_memory_mb": 812.0}]}) == []


def _dead_probes(fraction):
    """Two probes of a ReLU layer with `fraction` of its units never active on the batch."""
    return [{"step": s, "layers": {"2": {"type": "ReLU", "dead_fraction": fraction, "act_std": 0.5}}} for s in (1, 40)]


def test_dead_relus_are_an_error_while_the_net_cannot_fit_and_information_once_it_does():
    curves = ([2.3, 2.0, 1.9, 1.85], [0.2, 0.3, 0.35, 0.36])
    (stuck,) = diagnose(record(*curves, probes=_dead_probes(0.85)), rules=["dead_relu"])
    assert (stuck.rule, stuck.severity) == ("dead_relu_at_init", "error")
    # The same dead fraction in a net that fits its training split (auto's tabular models): the units cost
    # it nothing it needed, so the finding stays, as information, with the training accuracy beside it.
    fits = diagnose(record([0.6, 0.2, 0.1, 0.06], [0.8, 0.93, 0.97, 0.99], probes=_dead_probes(0.85)), rules=["dead_relu"])
    (fine,) = fits
    assert fine.severity == "info" and fine.evidence["train_accuracy"] == 0.99 and "still fits its training split" in fine.title
