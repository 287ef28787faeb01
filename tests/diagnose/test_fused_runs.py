"""The diagnosis of short runs of recurrent and transformer classifiers, probed inside their fused modules.

Each run is a hand-written loop recorded with `bs.record` (light probes), read back
from disk and diagnosed: a recurrent layer whose weights are too large must be named
at its module path; healthy sequence classifiers must raise no probe finding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import babysit as bs
from babysit.diagnose.layer_rules import activation_scale, gradient_flow, is_bias, saturated_units
from babysit.diagnose.rules import LAYER_RULES

PROBE_RULES = [*LAYER_RULES, "update_ratio"]


class Sequences(nn.Module):
    """A classifier reading each sample as a sequence of `features`-wide steps: digits as 8 rows of 8, MNIST-1D as 40 steps of 1."""

    def __init__(self, rnn: nn.Module, features: int, hidden: int, classes: int = 10) -> None:
        super().__init__()
        self.features, self.rnn, self.head = features, rnn, nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.reshape(len(x), -1, self.features))
        return self.head(out[:, -1])


class Transformer(nn.Module):
    """Digits rows through a linear embedding, two post-norm encoder layers, mean pooling and a linear head."""

    def __init__(self, features: int = 8, width: int = 32) -> None:
        super().__init__()
        self.features = features
        self.embed = nn.Linear(features, width)
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(width, 4, 64, dropout=0.1, batch_first=True), 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x.reshape(len(x), -1, self.features))).mean(1))


def recurrent(cell: str, data: bs.Dataset, hidden: int = 64, recurrent_scale: float = 1.0, **options) -> Sequences:
    """A `cell` classifier for `data` at torch's default init, its recurrent weights W_hh times `recurrent_scale`."""
    torch.manual_seed(0)
    features = 8 if data.input_shape == (1, 8, 8) else 1
    rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](features, hidden, batch_first=True, **options)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(recurrent_scale)
    return Sequences(rnn, features, hidden)


def own_loop(tmp_path, model: nn.Module, data: bs.Dataset, epochs: int = 3):
    """Train with Adam (lr 3e-3, batches of 64) in a plain loop recorded by `bs.record`; the record read back from disk."""
    torch.manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = data.train.x, data.train.y
    with bs.record(model, opt, runs_dir=tmp_path, name="run") as run:
        for _ in range(epochs):
            model.train()
            total, correct = 0.0, 0
            for idx in torch.randperm(len(y)).split(64):
                scores = model(x[idx])
                loss = F.cross_entropy(scores, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                correct += int((scores.argmax(1) == y[idx]).sum())
            model.eval()
            with torch.no_grad():
                val = model(data.val.x)
            run.log_epoch(train_loss=total / len(y), train_accuracy=correct / len(y), val_loss=F.cross_entropy(val, data.val.y).item(),
                          val_accuracy=(val.argmax(1) == data.val.y).float().mean().item())  # fmt: skip
    return bs.load_run(tmp_path / "run")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_weights_too_large_are_named_as_saturation_at_the_layer(cell, tmp_path, digits):
    run = own_loop(tmp_path, recurrent(cell, digits, recurrent_scale=50.0), digits)
    found = bs.diagnose(run)
    assert found[0].rule == "saturation_at_init" and found[0].severity == "error", found
    assert "layer rnn" in found[0].title and f"{cell.upper()} gate and state values" in found[0].title
    first = run.probes[0]["layers"]["rnn"]
    assert first["saturated_fraction"] > 0.5 and found[0].evidence["saturated_fraction"]["rnn"] > 0.5
    # The same layer, the same count, in the preflight's initialisation check.
    report = bs.check(recurrent(cell, digits, recurrent_scale=50.0), digits, only=["init_health"], progress=False)
    assert [f.rule for f in report.findings] == ["saturation_at_init"] and "layer rnn" in report.findings[0].title


def test_a_relu_rnn_whose_recurrence_explodes_is_named_with_its_growth_through_time(tmp_path, mnist1d):
    # MNIST-1D as 40 steps of one feature: W_hh at 3x torch's default multiplies the state ~1.2x per step.
    run = own_loop(tmp_path, recurrent("rnn", mnist1d, recurrent_scale=3.0, nonlinearity="relu"), mnist1d, epochs=1)
    found = bs.diagnose(run, rules=PROBE_RULES)
    explode = next(f for f in found if f.rule == "activations_explode")
    assert explode.severity == "error" and "layer rnn explodes through time" in explode.title
    assert explode.evidence["layer"] == "rnn" and explode.evidence["time_steps"] == 40 and explode.evidence["ratio"] > 1000
    assert found[0].rule == "activations_explode", found


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_healthy_recurrent_classifier_raises_no_probe_finding(cell, tmp_path, digits):
    run = own_loop(tmp_path, recurrent(cell, digits), digits)
    assert run.metrics[-1]["val_accuracy"] > 0.6  # it learns: 3 epochs of 8 rows of 8 pixels
    layers = run.probes[-1]["layers"]
    assert list(layers) == ["rnn", "head"] and layers["rnn"]["saturated_fraction"] < 0.05
    assert bs.diagnose(run, rules=PROBE_RULES) == []
    assert bs.check(recurrent(cell, digits), digits, only=["init_health"], progress=False).findings == []


def test_a_healthy_transformer_is_probed_inside_and_raises_no_probe_finding(tmp_path, digits):
    run = own_loop(tmp_path, Transformer(), digits, epochs=2)
    assert run.metrics[-1]["val_accuracy"] > 0.5
    layers = run.probes[0]["layers"]
    inside = {"self_attn": "MultiheadAttention", "norm1": "LayerNorm", "linear1": "Linear", "linear2": "Linear", "norm2": "LayerNorm"}
    for block in ("encoder.layers.0", "encoder.layers.1"):
        assert {n: layers[f"{block}.{n}"]["type"] for n in inside} == inside
        assert layers[f"{block}.linear1"]["dead_fraction"] < 0.1  # the feed-forward's ReLU, applied as F.relu
    assert bs.diagnose(run, rules=PROBE_RULES) == []
    assert bs.check(Transformer(), digits, only=["init_health"], progress=False).findings == []


def test_a_gated_state_is_no_vanishing_activation_and_starts_the_comparison_after_it():
    # A default LSTM's state (std 0.08 on unit-scale inputs) and the layers reading it, in the preflight.
    layers = {
        "rnn": {"type": "LSTM", "act_std": 0.08, "saturated_fraction": 0.0},
        "fc": {"type": "Linear", "act_std": 0.05},
        "act": {"type": "Tanh", "act_std": 0.05, "saturated_fraction": 0.0},
    }
    assert activation_scale(layers, input_std=1.0) == []
    layers["act"]["act_std"] = 0.08 * 1e-4  # but a layer after it that kills its signal is still named, against the state
    vanish = activation_scale(layers, input_std=1.0)
    assert [f.rule for f in vanish] == ["activations_vanish"] and "std 0.08 in layer rnn falls to 8e-06 in layer act" in vanish[0].title
    gates = {"rnn": {"type": "GRU", "act_std": 0.5, "saturated_fraction": 0.6}}
    assert "GRU gate and state values in layer rnn" in saturated_units(gates)[0].title


def test_recurrent_and_attention_biases_are_not_judged_as_weights():
    assert all(is_bias(n) for n in ["0.bias", "rnn.bias_ih_l0", "rnn.bias_hh_l1_reverse", "encoder.self_attn.in_proj_bias"])
    assert not any(is_bias(n) for n in ["rnn.weight_hh_l0", "encoder.self_attn.in_proj_weight", "biased.weight"])
    # A bias may start near 0: its relative gradient says nothing about the flow, also when a recurrent layer comes last.
    params = {
        "fc.weight": {"grad_norm": 0.1, "weight_norm": 10.0},
        "rnn.weight_ih_l0": {"grad_norm": 0.1, "weight_norm": 10.0},
        "rnn.bias_hh_l0": {"grad_norm": 1.0, "weight_norm": 1e-4},
    }
    assert gradient_flow(params) == []
    params["rnn.weight_hh_l0"] = {"grad_norm": 1e4, "weight_norm": 1e-2}
    assert [f.rule for f in gradient_flow(params)] == ["gradients_vanish"]
