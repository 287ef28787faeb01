"""Probes inside fused modules: recurrent layers (tuple outputs, packed sequences) and transformer layers."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import babysit as bs
from babysit.checks.init_health import layer_stats
from babysit.watch.layers import probed_layers
from babysit.watch.recurrent import SIGMOID_TAIL, TANH_TAIL


def only_record(module, *args, **kwargs):
    """The one record of a training-mode forward pass of `module` under `bs.watch`."""
    module.train()
    with bs.watch(module) as w:
        module(*args, **kwargs)
    assert len(w.records) == 1
    return w.records[0]["layers"]


def scaled(module, factor, prefix="weight_hh"):
    """`module` with its recurrent weights (or all weights, prefix="weight") multiplied by `factor`."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith(prefix):
                p.mul_(factor)
    return module


def reference_gates(rnn, sequences, h0):
    """Every gate and candidate pre-activation of a one-layer GRU/LSTM, stepping through each sequence by the documented equations.

    sequences: one (length, input_size) tensor per sample; h0: (directions, samples, hidden).
    Returns the pre-activations as (sigmoid values, tanh values) and each sample's output
    states (length, directions * hidden), which must match the module's own output.
    """
    H = rnn.hidden_size
    sig, tanh, outputs = [], [], []
    for b, seq in enumerate(sequences):
        per_direction = []
        for d, suffix in enumerate(["", "_reverse"][: 2 if rnn.bidirectional else 1]):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l0{suffix}"), getattr(rnn, f"weight_hh_l0{suffix}")
            b_ih, b_hh = getattr(rnn, f"bias_ih_l0{suffix}"), getattr(rnn, f"bias_hh_l0{suffix}")
            h, c, states = h0[d, b], torch.zeros(H, dtype=h0.dtype), []
            for x in seq if d == 0 else seq.flip(0):
                gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
                if isinstance(rnn, nn.LSTM):
                    i, f, g, o = (gi + gh).split(H)
                    sig += [i, f, o]
                    tanh.append(g)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                else:
                    r, z = torch.sigmoid(gi[:H] + gh[:H]), torch.sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
                    n = gi[2 * H :] + r * gh[2 * H :]
                    sig += [gi[:H] + gh[:H], gi[H : 2 * H] + gh[H : 2 * H]]
                    tanh.append(n)
                    h = (1 - z) * torch.tanh(n) + z * h
                states.append(h)
            per_direction.append(torch.stack(states if d == 0 else states[::-1]))
        outputs.append(torch.cat(per_direction, 1))
    return torch.cat(sig), torch.cat(tanh), outputs


def saturated_share(sig, tanh):
    return ((sig.abs() > SIGMOID_TAIL).sum() + (tanh.abs() > TANH_TAIL).sum()).item() / (sig.numel() + tanh.numel())


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("layout", ["batch_first", "packed", "bidirectional, hx=", "unbatched"])
def test_gate_saturation_matches_stepping_through_the_equations(cell, layout):
    torch.manual_seed(0)
    bidirectional = layout.startswith("bidirectional")
    rnn = scaled(cell(3, 6, batch_first=layout != "packed", bidirectional=bidirectional).double(), 8.0, prefix="weight")
    dirs = 2 if bidirectional else 1
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    lengths = [7, 3, 5, 2, 7] if layout == "packed" else [7] * 5
    h0 = torch.zeros(dirs, 5, 6, dtype=torch.float64)
    if layout == "packed":  # unsorted lengths, time-major
        layers = only_record(rnn, pack_padded_sequence(x.transpose(0, 1), torch.tensor(lengths), enforce_sorted=False))
    elif bidirectional:  # an initial state passed by keyword
        h0 = torch.randn(dirs, 5, 6, dtype=torch.float64)
        hx = (h0, torch.zeros_like(h0)) if cell is nn.LSTM else h0
        layers = only_record(rnn, x, hx=hx)
    elif layout == "unbatched":
        layers = only_record(rnn, x[0])
        x, lengths, h0 = x[:1], [7], h0[:, :1]
    else:
        layers = only_record(rnn, x)
    stats = layers[type(rnn).__name__]
    sig, tanh, outputs = reference_gates(rnn, [x[b, :n] for b, n in enumerate(lengths)], h0)
    with torch.no_grad():  # the reference steps through the same states as torch's fused kernel
        if layout == "batch_first":
            assert torch.allclose(torch.stack(outputs), rnn(x)[0], atol=1e-10)
    share = saturated_share(sig, tanh)
    assert 0.1 < share < 0.9  # weights 8x torch's default: many gates saturated, not all
    assert stats["saturated_fraction"] == pytest.approx(share, abs=1e-12)
    every_state = torch.cat(outputs)
    assert stats["act_std"] == pytest.approx(every_state.std(unbiased=False).item(), rel=1e-5)
    assert stats["hist_edges"][0] == -1.0 and stats["hist_edges"][-1] == 1.0  # a tanh-bounded state


def test_an_lstm_saturates_its_gates_long_before_its_state():
    # h = o * tanh(c) reaches ±0.99 only where o > 0.99 and |tanh(c)| > 0.99 together.
    torch.manual_seed(0)
    lstm = scaled(nn.LSTM(8, 32, batch_first=True), 50.0)
    x = torch.randn(64, 8, 8)
    stats = only_record(lstm, x)["LSTM"]
    out = lstm(x)[0]
    assert stats["saturated_fraction"] > 0.5
    assert (out.abs() > 0.99).float().mean().item() < 0.05


def test_a_tanh_rnn_state_is_its_tanh_output_and_a_stacked_cell_falls_back_to_it():
    torch.manual_seed(0)
    x = torch.randn(32, 10, 4)
    for rnn in (scaled(nn.RNN(4, 16, batch_first=True), 6.0), scaled(nn.GRU(4, 16, num_layers=2, batch_first=True), 30.0)):
        stats = only_record(rnn, x)[type(rnn).__name__]
        out = rnn(x)[0]
        assert stats["saturated_fraction"] == pytest.approx((out.abs() > 0.99).double().mean().item(), abs=1e-12)
        assert stats["saturated_fraction"] > 0.1
        assert "first_step_std" not in stats  # a bounded state cannot explode


def test_a_relu_rnn_reports_dead_units_and_its_growth_through_time():
    torch.manual_seed(0)
    rnn = nn.RNN(3, 20, nonlinearity="relu", batch_first=True, bidirectional=True)
    with torch.no_grad():
        rnn.bias_ih_l0[:5] = -100.0  # 5 of the forward direction's 20 units never fire
    x = torch.randn(16, 30, 3)
    stats = only_record(rnn, x)["RNN"]
    out, h_n = rnn(x)
    assert stats["dead_fraction"] == pytest.approx(1.0 - (out > 0).reshape(-1, 40).any(0).float().mean().item())
    assert stats["dead_fraction"] == pytest.approx(5 / 40)  # a unit is one of the 2 x 20 hidden features
    assert stats["last_step_std"] < 10 * stats["first_step_std"]  # torch's default init: no explosion

    exploding = scaled(nn.RNN(3, 20, nonlinearity="relu", batch_first=True, bidirectional=True), 5.0)
    stats = only_record(exploding, x)["RNN"]
    out, h_n = exploding(x)
    assert stats["first_step_std"] == pytest.approx(out[:, 0, :20].std(unbiased=False).item(), rel=1e-5)
    assert stats["last_step_std"] == pytest.approx(h_n[0].std(unbiased=False).item(), rel=1e-5)
    assert stats["last_step_std"] == pytest.approx(out[:, -1, :20].std(unbiased=False).item(), rel=1e-5)
    assert stats["time_steps"] == 30 and stats["last_step_std"] > 1000 * stats["first_step_std"]


def test_a_packed_relu_rnn_takes_each_sequence_last_step():
    torch.manual_seed(0)
    rnn = nn.RNN(2, 8, nonlinearity="relu")
    x, lengths = torch.randn(9, 4, 2), torch.tensor([4, 9, 2, 6])
    stats = only_record(rnn, pack_padded_sequence(x, lengths, enforce_sorted=False))["RNN"]
    last = torch.stack([rnn(x[:n, b])[0][-1] for b, n in enumerate(lengths.tolist())])
    assert stats["last_step_std"] == pytest.approx(last.std(unbiased=False).item(), rel=1e-5)
    assert stats["time_steps"] == 9


@pytest.mark.parametrize(
    "module, args, kwargs",
    [
        (nn.LSTM(3, 5), (pack_padded_sequence(torch.randn(6, 4, 3), torch.tensor([6, 2, 4, 1]), enforce_sorted=False),), {}),
        (nn.LSTM(3, 5, proj_size=2, num_layers=2, bidirectional=True), (torch.randn(6, 4, 3),), {}),
        (nn.LSTM(3, 5, proj_size=2), (torch.randn(6, 3),), {}),  # unbatched
        (nn.GRU(3, 5, batch_first=True), (torch.randn(4, 6, 3), torch.zeros(1, 4, 5)), {}),
        (nn.RNN(3, 5, num_layers=3, nonlinearity="relu"), (torch.randn(6, 4, 3),), {"hx": torch.zeros(3, 4, 5)}),
        (nn.MultiheadAttention(8, 2, batch_first=True), (torch.randn(4, 6, 8),) * 3, {}),
    ],
    ids=["packed", "projected stacked bidirectional", "projected unbatched", "hx positional", "hx keyword", "attention"],
)
def test_tuple_outputs_and_packed_sequences_are_measured(module, args, kwargs):
    layers = only_record(module, *args, **kwargs)
    stats = layers[type(module).__name__]
    out = module(*args, **kwargs)[0]
    out = out.data if hasattr(out, "batch_sizes") else out
    assert stats["act_mean"] == pytest.approx(out.mean().item(), abs=1e-6)
    assert all(math.isfinite(v) for k, v in stats.items() if k != "type" and not k.startswith("hist"))


def transformer(**options):
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(16, 4, 48, dropout=0.0, batch_first=True, **options)


def test_a_transformer_layer_is_probed_inside_in_training_mode():
    layer = transformer()
    with torch.no_grad():
        layer.linear1.bias[:12] = -100.0  # 12 of the 48 feed-forward units never pass their ReLU
    x = torch.randn(8, 10, 16)
    layers = only_record(layer, x)
    assert list(layers) == ["self_attn", "norm1", "linear1", "linear2", "norm2"]  # call order; linear1's ReLU is F.relu
    assert layers["self_attn"]["type"] == "MultiheadAttention"
    attention = layer.self_attn(x, x, x, need_weights=False)[0]
    assert layers["self_attn"]["act_std"] == pytest.approx(attention.std(unbiased=False).item(), rel=1e-4)
    hidden = layer.linear1(layer.norm1(x + attention))
    assert layers["linear1"]["act_std"] == pytest.approx(hidden.std(unbiased=False).item(), rel=1e-4)
    # A unit is one of the 48 features; dead when its input to the ReLU is <= 0 at every position of every sample.
    assert layers["linear1"]["dead_fraction"] == pytest.approx(1.0 - (hidden > 0).reshape(-1, 48).any(0).float().mean().item())
    assert layers["linear1"]["dead_fraction"] == pytest.approx(12 / 48)
    assert "dead_fraction" not in layers["linear2"]


def test_a_transformer_activation_counts_units_on_the_last_dimension():
    gelu = only_record(transformer(activation="gelu"), torch.randn(8, 10, 16))
    assert "dead_fraction" not in gelu["linear1"]  # GELU keeps a gradient below 0: its units cannot die
    layer = transformer(activation=nn.ReLU())
    with torch.no_grad():
        layer.linear1.bias[:6] = -100.0
    layers = only_record(layer, torch.randn(8, 10, 16))
    assert layers["activation"]["dead_fraction"] == pytest.approx(6 / 48)  # not the 10 positions of dim 1


def test_evaluation_is_not_probed_and_the_preflight_sees_the_same_layers():
    model = nn.Sequential(nn.Linear(4, 16), transformer(), nn.Flatten(), nn.Linear(16 * 5, 3))
    x = torch.randn(6, 5, 4)
    model.eval()
    with bs.watch(model) as w:
        model(x)
    assert w.records == []  # evaluation passes are not measured
    recorded = only_record(model, x)
    assert set(recorded) == set(layer_stats(model.eval(), x))
    assert {"1.self_attn", "1.linear1", "1.linear2", "1.norm1", "1.norm2"} <= set(recorded)


def test_probed_layers_lists_what_a_watch_records():
    lstm = nn.Sequential(nn.LSTM(3, 4))
    assert [(p.name, p.kind) for p in probed_layers(lstm)] == [("0", "tanh")]
    relu = nn.RNN(3, 4, nonlinearity="relu")
    assert [(p.name, p.kind) for p in probed_layers(relu)] == [("RNN", "relu")]
    kinds = {p.name: (p.kind, p.units_last) for p in probed_layers(transformer())}
    assert kinds["linear1"] == ("pre_relu", True) and kinds["self_attn"] == ("plain", False)


def test_a_watched_lstm_step_records_its_recurrent_gradients():
    torch.manual_seed(0)
    lstm, head = nn.LSTM(3, 8, batch_first=True), nn.Linear(8, 2)
    model = nn.ModuleDict({"rnn": lstm, "head": head})
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with bs.watch(model, opt, preset="full") as w:
        opt.zero_grad()
        F.cross_entropy(head(lstm(torch.randn(4, 5, 3))[0][:, -1]), torch.tensor([0, 1, 0, 1])).backward()
        opt.step()
    assert {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_hh_l0"} <= set(w.records[0]["params"])
    assert "rnn" in w.records[0]["layers"]
