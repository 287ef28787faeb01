"""The report's figures draw what the run record holds, against the diagnosis thresholds."""

import io
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from matplotlib.figure import Figure

from babysit.diagnose import layer_rules
from babysit.report import plots


def metrics(train_loss, val_loss=None):
    n = len(train_loss)
    return [
        {"epoch": i + 1, "train_loss": t, "val_loss": (val_loss or train_loss)[i], "train_accuracy": 0.1 * (i + 1), "val_accuracy": 0.08 * (i + 1)}
        for i, t in enumerate(train_loss)
    ]


def probe(step, layers=None, params=None):
    return {"step": step, "epoch": 1, "layers": layers or {}, "params": params or {}}


def relu(std, dead, counts=(1, 2, 3, 4)):
    return {"type": "ReLU", "act_mean": 0.3, "act_std": std, "dead_fraction": dead,
            "hist_edges": [0.0, 0.5, 1.0, 1.5, 2.0][: len(counts) + 1], "hist_counts": list(counts)}


def rendered(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_learning_curves_plot_train_and_val_per_epoch():
    fig = plots.learning_curves(metrics([2.3, 1.5, 1.0], [2.2, 1.7, 1.4]), best_epoch=3)
    loss_ax, acc_ax = fig.axes
    train, val = loss_ax.lines[:2]
    assert list(train.get_xdata()) == [1, 2, 3] and list(train.get_ydata()) == [2.3, 1.5, 1.0]
    assert list(val.get_ydata()) == [2.2, 1.7, 1.4] and loss_ax.get_yscale() == "linear"
    assert list(acc_ax.lines[0].get_ydata()) == pytest.approx([0.1, 0.2, 0.3])
    assert any(list(line.get_xdata()) == [3, 3] for line in acc_ax.lines)  # the best epoch
    assert plots.learning_curves([]) is None


def test_an_exploding_loss_gets_a_log_axis_and_gaps_for_nan():
    fig = plots.learning_curves(metrics([2.3, 40.0, 9e6, math.nan]))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and math.isnan(ax.lines[0].get_ydata()[3])
    assert rendered(fig)[:4] == b"\x89PNG"


def test_histograms_grid_is_layers_by_spread_steps_with_normalised_bars():
    layers = lambda s: {"0": {"type": "Linear", "act_std": 1.0}, "1": relu(s, 0.0), "3": relu(s / 2, 0.1, (4, 0, 0, 4))}  # noqa: E731
    probes = [probe(s, layers(1.0 / s)) for s in (1, 2, 4, 8, 16, 32, 64)]
    fig = plots.activation_histograms(probes, max_steps=3)
    # The Linear output is not an activation: 2 layers; steps 1, 8 (the middle) and 64.
    assert len(fig.axes) == 2 * 3
    assert [ax.get_ylabel() for ax in fig.axes[::2]] == ["step 1", "step 8", "step 64"]
    assert [ax.get_title() for ax in fig.axes[:2]] == ["1 (ReLU)", "3 (ReLU)"]
    heights = [p.get_height() for p in fig.axes[1].patches]
    assert heights == pytest.approx([0.5, 0.0, 0.0, 0.5]) and sum(heights) == pytest.approx(1.0)
    assert "std 0.5" in [t.get_text() for t in fig.axes[1].texts]
    assert plots.activation_histograms([probe(1)]) is None


def test_a_layer_without_finite_histogram_says_so():
    bad = {"1": {"type": "ReLU", "act_std": math.nan, "hist_edges": [math.nan] * 5, "hist_counts": [0, 0, 0, 0]}}
    fig = plots.activation_histograms([probe(1, bad)])
    assert [t.get_text() for t in fig.axes[0].texts] == ["no data"]


def test_activation_std_lines_follow_depth_over_steps():
    probes = [probe(s, {"1": relu(1.0, 0), "3": relu(10.0 ** -s, 0)}) for s in (1, 2, 4)]
    ax = plots.activation_std(probes).axes[0]
    assert [line.get_label() for line in ax.lines] == ["1", "3"]
    assert list(ax.lines[1].get_xdata()) == [1, 2, 4] and list(ax.lines[1].get_ydata()) == pytest.approx([0.1, 0.01, 1e-4])
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"  # spans 1e4: log
    flat = plots.activation_std([probe(s, {"1": relu(0.9, 0), "3": relu(0.95, 0)}) for s in (1, 2)]).axes[0]
    assert flat.get_yscale() == "linear"


def test_update_ratios_on_a_log_axis_with_1e_3_and_the_rule_band():
    params = lambda r: {"0.weight": {"grad_norm": 1, "weight_norm": 2, "update_ratio": r},  # noqa: E731
                        "0.bias": {"grad_norm": 1, "weight_norm": 0, "update_ratio": math.nan},
                        "2.weight": {"grad_norm": 1, "weight_norm": 2, "update_ratio": 0.0}}
    ax = plots.update_ratios([probe(s, params=params(1e-3 * s)) for s in (1, 2, 4)]).axes[0]
    assert ax.get_yscale() == "log"
    labels = [line.get_label() for line in ax.lines if not line.get_label().startswith("_")]
    assert labels == ["0.weight"]  # no bias, no zero (frozen) ratio
    assert any(list(line.get_ydata()) == [1e-3, 1e-3] for line in ax.lines)
    band = ax.patches[0].get_path().get_extents().transformed(ax.patches[0].get_transform())
    y0, y1 = ax.transData.inverted().transform([[0, band.y0], [0, band.y1]])[:, 1]
    assert y0 == pytest.approx(layer_rules.UPDATE_LOW_WARN) and y1 == pytest.approx(layer_rules.UPDATE_HIGH_WARN)
    assert plots.update_ratios([probe(1, {"1": relu(1, 0)})]) is None


def test_relative_gradients_are_grad_over_weight_norm():
    params = {"0.weight": {"grad_norm": 0.5, "weight_norm": 10.0, "update_ratio": 1e-3}, "0.bias": {"grad_norm": 1.0, "weight_norm": 1.0}}
    ax = plots.relative_gradients([probe(1, params=params), probe(2, params=params)]).axes[0]
    assert [line.get_label() for line in ax.lines] == ["0.weight"] and list(ax.lines[0].get_ydata()) == [0.05, 0.05]


def test_unit_health_panels_only_for_the_kinds_present_with_the_rule_thresholds():
    relu_only = plots.unit_health([probe(s, {"1": relu(1, 0.1 * s)}) for s in (1, 2)])
    assert len(relu_only.axes) == 1 and "dead ReLU" in relu_only.axes[0].get_title()
    ax = relu_only.axes[0]
    assert list(ax.lines[-1].get_ydata()) == pytest.approx([0.1, 0.2])
    assert {line.get_ydata()[0] for line in ax.lines[:2]} == {layer_rules.DEAD_WARN, layer_rules.DEAD_ERROR}
    tanh = {"type": "Tanh", "act_std": 0.9, "saturated_fraction": 0.6}
    both = plots.unit_health([probe(1, {"1": relu(1, 0.0), "2": tanh})])
    assert len(both.axes) == 2 and "saturated" in both.axes[1].get_title()
    assert plots.unit_health([probe(1, {"0": {"type": "Linear", "act_std": 1.0}})]) is None


def test_confusion_matrix_rows_are_normalised_and_names_are_safe_for_mathtext():
    names = ["$\\frac{", "cat", "<b>dog</b>"]
    fig = plots.confusion([[3, 1, 0], [0, 4, 0], [2, 0, 2]], names)
    image = fig.axes[0].images[0].get_array()
    assert image[0].tolist() == pytest.approx([0.75, 0.25, 0.0]) and image[2].tolist() == pytest.approx([0.5, 0.0, 0.5])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["\\$\\frac{", "cat", "<b>dog</b>"]
    assert rendered(fig)[:4] == b"\x89PNG"  # an unbalanced '$' would fail here


def test_every_figure_is_a_bare_figure_that_renders_headless():
    probes = [probe(s, {"1": relu(1.0, 0.0)}, {"0.weight": {"grad_norm": 1.0, "weight_norm": 2.0, "update_ratio": 1e-3}}) for s in (1, 2)]
    figures = [plots.learning_curves(metrics([1.0, 0.5])), plots.activation_histograms(probes), plots.activation_std(probes),
               plots.update_ratios(probes), plots.relative_gradients(probes), plots.unit_health(probes), plots.confusion([[1]], ["a"])]
    for fig in figures:
        assert isinstance(fig, Figure) and rendered(fig)[:4] == b"\x89PNG"


@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10), st.none(),
                          st.sampled_from(["nan", "inf", "-inf", "Infinity", "x"]))))
def test_finite_turns_anything_into_floats_or_nan(values):
    out = plots.finite(values)
    assert len(out) == len(values)
    for v, x in zip(values, out):
        if isinstance(v, (int, float)) and math.isfinite(v):
            assert x == v
        else:
            assert math.isnan(x)


@given(st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(math.nan)), max_size=3000), st.integers(1, 50))
def test_thinning_keeps_order_the_extremes_and_at_most_two_points_a_bucket(ys, buckets):
    xs = list(range(len(ys)))
    tx, ty = plots.thin(xs, ys, buckets)
    assert len(tx) == len(ty) <= max(len(ys), 2 * buckets)
    assert tx == sorted(set(tx)) and all(ty[i] is ys[x] or ty[i] == ys[x] for i, x in enumerate(tx))  # the points themselves, in order
    kept = [y for y in ty if math.isfinite(y)]
    values = [y for y in ys if math.isfinite(y)]
    if values:  # the lowest and highest value of the whole series always survive: a spike is not thinned away
        assert min(kept) == min(values) and max(kept) == max(values)


def test_a_100000_epoch_run_draws_a_thinned_curve_that_still_shows_its_one_spike():
    losses = [1.0 / (1 + i) for i in range(100_000)]
    losses[73_210] = 50.0  # one epoch's blow-up
    fig = plots.learning_curves(metrics(losses))
    loss_line = fig.axes[0].get_lines()[0]
    assert len(loss_line.get_xdata()) <= 2 * plots.BUCKETS
    assert 50.0 in list(loss_line.get_ydata()) and 73_211 in list(loss_line.get_xdata())  # the spike's epoch, 1-based
    assert loss_line.get_marker() in ("None", "", None)  # 1,000 markers would merge into a band
    short = plots.learning_curves(metrics([2.3, 1.5, 1.0])).axes[0].get_lines()[0]
    assert short.get_marker() == "o" and list(short.get_xdata()) == [1, 2, 3]  # a short run keeps every point and its markers
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss (cross-entropy)", "accuracy"]
