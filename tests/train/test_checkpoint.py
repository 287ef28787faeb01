"""Checkpoints: best and last, atomic, weights_only loading, resume equals an uninterrupted run."""

import math

import pytest
import torch

import babysit as bs
from babysit.data.augment import with_augmentation
from babysit.errors import DataError
from babysit.build import model_from_config
from babysit.train.checkpoint import Checkpointer, load_checkpoint


def small_mlp(data, **kw):
    bs.train.seed_everything(0)
    return bs.blocks.mlp(data.input_shape, data.num_classes, hidden=(32,), **kw)


def without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_best_and_last_hold_what_they_claim(digits, tmp_path):
    ckpt = Checkpointer(tmp_path, config={"note": "x"})
    result = bs.fit(small_mlp(digits), digits, bs.Recipe(lr=1e-2, epochs=3, device="cpu"), callbacks=[ckpt], progress=False)
    last, best = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "best.pt")
    assert last["epoch"] == 3 and last["step"] == result.history.records[-1]["step"]
    assert last["history"] == result.history.records and last["config"] == {"note": "x"}
    top = result.history.best("val_accuracy")
    assert best["epoch"] == top["epoch"] and best["metric"] == {"name": "val_accuracy", "value": top["val_accuracy"]}
    # The best weights reproduce the best epoch's validation accuracy.
    model = small_mlp(digits)
    model.load_state_dict(best["model"])
    assert bs.evaluate(model, digits.val.x, digits.val.y)[1] == top["val_accuracy"]
    assert set(best["rng"]) == {"torch", "shuffle", "cuda"} and bs.blocks.load_preprocessor(best["preprocessor"]).transform(digits.train.x[:1]).shape == (1, 1, 8, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temporary files left


class LrBomb:
    """From the start of epoch `at` on, multiply the learning rate by 1e6: a run that explodes late."""

    def __init__(self, at):
        self.at = at

    def on_epoch_start(self, state):
        if state.epoch + 1 == self.at:
            for group in state.optimizer.param_groups:
                group["lr"] *= 1e6


def test_a_diverging_run_never_overwrites_its_good_checkpoint(digits, tmp_path):
    ckpt = Checkpointer(tmp_path)
    guard = bs.train.DivergenceGuard()
    recipe = bs.Recipe(optimizer="sgd", lr=0.1, epochs=5, device="cpu")
    result = bs.fit(small_mlp(digits), digits, recipe, callbacks=[LrBomb(at=3), guard, ckpt], progress=False)
    assert result.status == "diverged" and result.epochs == 3
    good = result.history.records[1]
    for name in ("best.pt", "last.pt"):
        saved = load_checkpoint(tmp_path / name)
        assert saved["epoch"] == 2 and saved["status"] == "running"
        model = small_mlp(digits)
        model.load_state_dict(saved["model"])
        assert bs.evaluate(model, digits.val.x, digits.val.y)[1] == good["val_accuracy"]


def test_lr_1e6_diverges_within_a_few_steps_and_its_best_checkpoint_loads(digits, tmp_path):
    cfg = bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp"}, "train": {"optimizer": "sgd", "lr": 1e6, "device": "cpu"}})
    done = bs.workflows.start_run(cfg, runs_dir=tmp_path, name="boom", progress=False, data=digits)
    record = bs.load_run(tmp_path / "boom")
    assert done.result.status == "diverged" == record.status
    diverged = [e for e in record.events if e["event"] == "diverged"]
    assert len(diverged) == 1 and diverged[0]["step"] <= 5
    assert "initial loss" in diverged[0]["detail"] or "nan" in diverged[0]["detail"]
    best = load_checkpoint(tmp_path / "boom" / "checkpoints" / "best.pt")
    assert best["step"] == 0  # the initial weights: the only state that was never broken
    model = model_from_config(cfg.model, digits, seed=cfg.train.seed)  # the same initial weights, rebuilt
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best["model"])
    assert all(torch.equal(initial[k], v) for k, v in model.state_dict().items())
    loss, _ = bs.evaluate(model, digits.val.x, digits.val.y)
    assert math.isfinite(loss)


class Crash(Exception):
    pass


class CrashAfter:
    """Die at the end of epoch `epoch` (after the checkpoint is written), as a killed process would."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if len(state.history) == self.epoch:
            raise Crash


def crash_and_resume(make_model, data, recipe, directory, at=2):
    """Train until a crash after epoch `at`, then resume a fresh model from last.pt."""
    with pytest.raises(Crash):
        bs.fit(make_model(), data, recipe, callbacks=[Checkpointer(directory), CrashAfter(at)], progress=False)
    state = load_checkpoint(directory / "last.pt")
    assert state["epoch"] == at
    torch.manual_seed(123)  # whatever the RNG did in between is undone by the checkpoint
    return bs.fit(make_model(), data, recipe, progress=False, resume_from=state)


def test_resuming_from_a_checkpoint_continues_the_same_run(digits, tmp_path):
    recipe = bs.Recipe(optimizer="momentum", epochs=4, batch_size=64, device="cpu", seed=5)
    full = bs.fit(small_mlp(digits, dropout=0.3), digits, recipe, progress=False)
    resumed = crash_and_resume(lambda: small_mlp(digits, dropout=0.3), digits, recipe, tmp_path)
    assert without_seconds(resumed.history.records) == without_seconds(full.history.records)
    assert resumed.test_loss == full.test_loss and resumed.test_accuracy == full.test_accuracy


@pytest.mark.parametrize(
    "recipe",
    [
        # Every stateful block of a recipe: an LR schedule, momentum annealing, an EMA of the weights,
        # and (through the data) random augmentation.
        {"optimizer": "momentum", "schedule": "step", "period": 1, "gamma": 0.5, "momentum": 0.5, "momentum_final": 0.9, "averaging": "ema"},
        {"optimizer": "adam", "schedule": "cyclic", "period": 2, "averaging": "polyak", "max_norm": 3.0},
        {"optimizer": "lbfgs", "lr": 0.5},
    ],
    ids=["step-ema", "cyclic-polyak", "lbfgs"],
)
def test_resume_continues_schedules_averages_and_augmentation(digits, tmp_path, recipe):
    data = with_augmentation(digits, ["flip", "crop"], padding=1)
    settings = bs.Recipe(**{"epochs": 4, "batch_size": 128, "device": "cpu", "seed": 1, **recipe})
    full = bs.fit(small_mlp(data), data, settings, progress=False)
    resumed = crash_and_resume(lambda: small_mlp(data), data, settings, tmp_path)
    assert without_seconds(resumed.history.records) == without_seconds(full.history.records)
    assert resumed.test_loss == full.test_loss


def test_damaged_or_missing_checkpoints_are_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot be read"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not a babysit checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


class Evil:
    """Any pickled object: weights_only loading must refuse it."""


def test_checkpoints_refuse_pickled_objects(tmp_path):
    torch.save({"format": 1, "obj": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="cannot be read"):
        load_checkpoint(tmp_path / "evil.pt")  # weights_only=True: no arbitrary code on load


def test_unknown_precisions_are_refused():
    with pytest.raises(bs.ConfigError, match="train.precision must be one of fp32, bf16"):
        bs.Recipe(precision="fp16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast needs CUDA")
def test_bf16_autocast_trains_on_cuda(digits):
    recipe = bs.Recipe(lr=1e-2, epochs=3, device="cuda", precision="bf16")
    with bs.watch(preset="full") as w:
        result = bs.fit(small_mlp(digits), digits, recipe, callbacks=[w], progress=False)
    assert result.test_accuracy > 0.85
    assert all(v["act_std"] == v["act_std"] for r in w.records for v in r["layers"].values())  # finite stats from bf16


def test_checkpoints_of_many_short_epochs_are_written_a_few_times_and_the_last_ones_always_land(tmp_path, monkeypatch):
    import babysit.train.checkpoint as module

    writes = []
    real = module.atomic_write_bytes
    monkeypatch.setattr(module, "atomic_write_bytes", lambda path, data: (writes.append(path.name), real(path, data))[1])
    data = bs.Dataset.from_arrays(torch.randn(64, 4), torch.arange(64) % 2)
    result = bs.fit(torch.nn.Linear(4, 2), data, bs.Recipe(epochs=300, batch_size=64, lr=0.05), callbacks=[Checkpointer(tmp_path)], progress=False)
    # A write (serialise + fsync) costs far more than one of these epochs: at most 1% of the time goes to writing.
    assert writes.count("last.pt") < 300 / 3
    last, best = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "best.pt")
    assert last["epoch"] == 300 and [r["epoch"] for r in last["history"]] == list(range(1, 301))
    top = result.history.best("val_accuracy", "max")
    assert best["metric"]["value"] == top["val_accuracy"] and len(best["history"]) == best["epoch"]
    assert best["history"][-1]["val_accuracy"] == top["val_accuracy"]
