"""Mixed precision on the CPU: the probes under autocast (bf16, fp16), float16 overflow, a scaler that keeps skipping, underflow."""

import copy
from dataclasses import replace
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import babysit as bs
from babysit.checks.base import CheckSettings
from babysit.diagnose.record import RunView


def mlp(seed=0, last_scale=1.0, first_scale=1.0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    with torch.no_grad():
        model[1].weight.mul_(first_scale)
        model[3].weight.mul_(last_scale)
    return model


def outputs_of(model, x, dtype):
    """Each Linear/ReLU output of one autocast forward, captured by plain hooks."""
    seen, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.ReLU)):
            handles.append(m.register_forward_hook(lambda mod, i, out, name=name: seen.setdefault(name, out.detach().clone())))
    with torch.autocast("cpu", dtype=dtype):
        model(x)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("dtype, name", [(torch.bfloat16, "bfloat16"), (torch.float16, "float16")])
def test_probes_under_autocast_measure_the_half_precision_outputs_in_float32(digits, dtype, name):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = digits.train.x[:128], digits.train.y[:128]
    expected = outputs_of(copy.deepcopy(model), x, dtype)  # the same weights: the first step's outputs
    with bs.watch(model, opt, preset="full") as w:
        for _ in range(3):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=dtype):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
    first = w.records[0]
    for layer, out in expected.items():
        stats = first["layers"][layer]
        assert out.dtype == dtype and stats["dtype"] == name and stats["nonfinite_fraction"] == 0
        exact = out.double()
        assert stats["act_mean"] == pytest.approx(float(exact.mean()), rel=1e-5, abs=1e-7)
        assert stats["act_std"] == pytest.approx(float(exact.std(unbiased=False)), rel=1e-5)
    # Gradients and updates of the float32 master weights: finite, and a real step.
    assert all(math.isfinite(p["grad_norm"]) and 1e-5 < p["update_ratio"] < 1 for p in first["params"].values() if p["weight_norm"] > 0)


def test_float16_values_near_its_limit_give_exact_statistics_not_overflowed_ones():
    # Outputs near 60000: finite in float16, but their squares (3.6e9) overflow it; the moments are taken in float32.
    model = nn.Sequential(nn.Linear(4, 256))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
        model[0].bias.copy_(torch.linspace(50000, 60000, 256))
    x = torch.randn(32, 4)
    with bs.watch(model, preset="full") as w, torch.autocast("cpu", dtype=torch.float16):
        out = model(x)
    stats = w.records[0]["layers"]["0"]
    assert out.dtype == torch.float16 and bool(torch.isfinite(out).all())
    assert stats["nonfinite_fraction"] == 0
    assert stats["act_mean"] == pytest.approx(float(out.double().mean()), rel=1e-6)
    assert stats["act_std"] == pytest.approx(float(out.double().std(unbiased=False)), rel=1e-4)


def test_a_float16_overflow_is_counted_in_its_layer_and_named_by_the_diagnosis(digits):
    # The first Linear's outputs reach about 5e6 (its weights 1e5x their default scale): past float16's 65504, not float32's or bf16's.
    x, y = digits.train.x[:64], digits.train.y[:64]
    records = {}
    for dtype in (torch.float16, torch.bfloat16):
        model = mlp(first_scale=1e5)
        with bs.watch(model, preset="full") as w, torch.autocast("cpu", dtype=dtype):
            F.cross_entropy(model(x), y).backward()
        records[dtype] = w.records
    layers = records[torch.float16][0]["layers"]
    assert layers["1"]["dtype"] == "float16" and 0.05 < layers["1"]["nonfinite_fraction"] < 1
    found = bs.diagnose(RunView(probes=records[torch.float16]))
    overflow = [f for f in found if f.rule == "fp16_overflow"]
    assert len(overflow) == 1 and overflow[0].evidence["layer"] == "1" and overflow[0].severity == "error"
    assert overflow[0].title.startswith("layer 1 (Linear) overflowed float16 at step 1") and "bf16" in overflow[0].fix
    # In bf16 the same outputs are finite: no overflow named.
    assert records[torch.bfloat16][0]["layers"]["1"]["nonfinite_fraction"] == 0
    assert not [f for f in bs.diagnose(RunView(probes=records[torch.bfloat16])) if f.rule == "fp16_overflow"]


def train_fp16(digits, tmp_path, name, loss_factor, iterations=60):
    """A float16 loop with a GradScaler on the CPU, recorded with `bs.record(..., scaler=...)`."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu")
    x, y = digits.train.x, digits.train.y
    with bs.record(model, opt, name=name, runs_dir=tmp_path, scaler=scaler, probes="full") as run:
        for i in range(iterations):
            idx = slice((i * 64) % 1216, (i * 64) % 1216 + 64)
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.cross_entropy(model(x[idx]), y[idx]) * loss_factor
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            run.log_step(loss)
        run.log_epoch(train_loss=float(loss), val_loss=float(loss))
    return run, scaler


def test_a_scaler_that_keeps_skipping_steps_is_named_and_a_settling_one_is_not(digits, tmp_path):
    # A loss 1e6 times too large (a sum where a mean was meant, over a huge batch): its gradients overflow float16
    # at every scale down to below 1, so the scaler skips far more steps than settling from 2^16 takes.
    broken, scaler = train_fp16(digits, tmp_path, "broken", 1e6)
    facts = broken.program["precision"]
    assert facts["iterations"] == 60 and facts["scale_first"] == 65536.0 and facts["scale_last"] == scaler.get_scale() < 1
    assert facts["skipped"] == 60 - broken.step  # every iteration that did not step was counted, from the scale alone
    found = [f for f in bs.diagnose(broken.record()) if f.rule == "scaler_skips_steps"]
    assert len(found) == 1 and found[0].severity == "error" and "below 1" in found[0].title
    assert found[0].evidence["skipped"] > found[0].evidence["allowance"] == pytest.approx(16 + 60 / 2000 + 1)
    # The probes of skipped steps are kept, once per step number and marked.
    probes = broken.record().probes
    skipped = [p for p in probes if p.get("skipped")]
    assert skipped and len({p["step"] for p in skipped}) == len(skipped)

    healthy, _ = train_fp16(digits, tmp_path, "healthy", 1.0)
    facts = healthy.program["precision"]
    assert facts["skipped"] <= 16 and facts["skipped"] == 60 - healthy.step  # settling only
    assert not [f for f in bs.diagnose(healthy.record()) if f.rule == "scaler_skips_steps"]


def test_the_precision_check_names_gradients_lost_to_float16_underflow(digits):
    # The last layer 1e-5 times He scale: the first layer's gradients are about 1e-9, below float16's 6e-8.
    model = mlp(last_scale=1e-5)
    report = bs.check(model, digits, only=["precision"], settings=CheckSettings(precision="fp16"), progress=False)
    (result,) = report.results
    assert result.status == "fail"
    (finding,) = result.findings
    assert finding.rule == "grad_underflow" and finding.evidence["param"] == "1.weight" and finding.evidence["lost"] > 0.9
    assert "GradScaler" in finding.fix
    # With a GradScaler's scale, or in bf16 (float32's range), nothing is lost.
    scaled = bs.check(model, digits, only=["precision"], settings=CheckSettings(precision="fp16", loss_scale=65536.0), progress=False)
    assert scaled.results[0].status == "pass" and scaled.results[0].evidence["params"]["1.weight"]["lost"] == 0
    bf16 = bs.check(model, digits, bs.Recipe(precision="bf16"), only=["precision"], progress=False)
    assert bf16.results[0].status == "pass"
    assert bs.check(model, digits, only=["precision"], progress=False).results[0].status == "skip"  # float32: nothing to compare
    with pytest.raises(bs.ConfigError, match="precision must be 'fp16', 'bf16' or None"):
        CheckSettings(precision="half")


def test_fit_trains_in_bf16_on_the_cpu_and_its_probes_say_so(digits):
    recipe = bs.Recipe(optimizer="adam", lr=1e-3, epochs=4, device="cpu")
    fp32 = bs.fit(bs.build_model("mlp", digits.input_shape, digits.num_classes), digits, recipe, progress=False)
    model = bs.build_model("mlp", digits.input_shape, digits.num_classes)
    with bs.watch(preset="light") as w:
        result = bs.fit(model, digits, replace(recipe, precision="bf16"), callbacks=[w], progress=False)
    assert result.test_accuracy > 0.85 and abs(result.test_accuracy - fp32.test_accuracy) < 0.03  # 0.911 vs 0.916
    linear = next(name for name, s in w.records[0]["layers"].items() if s["type"] == "Linear")
    assert all(r["layers"][linear]["dtype"] == "bfloat16" and r["layers"][linear]["nonfinite_fraction"] == 0 for r in w.records)
    assert next(model.parameters()).dtype == torch.float32  # the master weights stay float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the device path of the probes needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_on_cuda_half_precision_outputs_are_measured_on_the_device_and_overflow_counted(digits, dtype):
    model = mlp(first_scale=1e5).cuda()
    x, y = digits.train.x[:64].cuda(), digits.train.y[:64].cuda()
    expected = outputs_of(copy.deepcopy(model), x, dtype)
    with bs.watch(model, preset="full") as w, torch.autocast("cuda", dtype=dtype):
        F.cross_entropy(model(x), y).backward()
    layers = w.records[0]["layers"]
    for name, out in expected.items():
        share = float((~torch.isfinite(out)).float().mean())
        assert layers[name]["nonfinite_fraction"] == pytest.approx(share, abs=1e-9)
        if share == 0:
            assert layers[name]["act_std"] == pytest.approx(float(out.double().std(unbiased=False)), rel=1e-4)
    named = [f.rule for f in bs.diagnose(RunView(probes=w.records))]
    assert ("fp16_overflow" in named) == (dtype == torch.float16)
