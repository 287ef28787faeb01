"""The Lightning callback: the example's run record renders, a broken learning rate is named first."""

import json
import logging
import runpy
import warnings
from pathlib import Path

import pytest

pytest.importorskip("lightning", reason="PyTorch Lightning is an optional extra: pip install 'babysit[lightning]'")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import babysit as bs  # noqa: E402
from babysit.cli import app  # noqa: E402
from babysit.errors import ConfigError  # noqa: E402
from babysit.integrations.lightning import Babysit  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lightning_mnist1d.py"


@pytest.fixture(scope="module")
def example():
    return runpy.run_path(str(EXAMPLE))["main"]


def test_example_writes_a_run_record_that_babysit_report_renders(example, tmp_path, capsys):
    path = example(["--epochs", "2", "--out", str(tmp_path), "--name", "good", "--quiet"])
    printed = capsys.readouterr().out
    assert printed.strip().splitlines()[-1] == f"report: {Path(path) / 'report.html'}"
    record = bs.load_run(path)
    assert record.status == "completed" and [m["epoch"] for m in record.metrics] == [1, 2]
    steps = 36  # 3600 MNIST-1D training samples in batches of 100
    assert [m["step"] for m in record.metrics] == [steps, 2 * steps] and record.summary["steps"] == 2 * steps
    assert set(record.metrics[0]) == {"epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    assert record.metrics[-1]["train_loss"] < record.metrics[0]["train_loss"] < 2.31  # ln(10) at chance
    assert record.metrics[0]["lr"] == 0.1
    # Light probes: steps 1, 2, 4, ..., 64; each has this step's gradients (Lightning steps through a closure).
    assert [p["step"] for p in record.probes] == [1, 2, 4, 8, 16, 32, 50, 64]
    assert set(record.probes[0]["params"]) == {"net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"}
    assert all(v["grad_norm"] > 0 and v["update_ratio"] > 0 for v in record.probes[0]["params"].values())
    assert [e["event"] for e in record.events] == ["started", "completed"]
    shown = CliRunner().invoke(app, ["report", path, "--no-per-class"])
    assert shown.exit_code == 0, shown.output
    assert shown.output.strip().splitlines()[-1] == str(Path(path) / "report.html")


def test_broken_learning_rate_stops_the_trainer_and_is_diagnosed_first(example, tmp_path, capsys):
    path = example(["--lr", "50", "--epochs", "3", "--out", str(tmp_path), "--name", "broken", "--quiet"])
    record = bs.load_run(path)
    assert record.status == "diverged"
    diverged = [e for e in record.events if e["event"] == "diverged"]
    assert diverged and diverged[0]["step"] < 36  # stopped inside the first epoch, not at max_epochs
    assert record.summary["steps"] == diverged[0]["step"]  # trainer.should_stop: no further optimiser step
    first = bs.diagnose(record)[0]
    assert first.rule == "loss_explodes" and "learning rate" in first.fix
    assert "loss_explodes" in capsys.readouterr().out  # the findings are printed at the end of fit


class _Tiny(pl.LightningModule):
    """Logs its metrics under its own names: "loss", "vl", "va"."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self.net(batch[0]), batch[1])
        self.log("loss", loss, on_step=True, on_epoch=True)  # stored as loss_step and loss_epoch
        return {"loss": loss}

    def validation_step(self, batch, batch_idx):
        scores = self.net(batch[0])
        self.log("vl", F.cross_entropy(scores, batch[1]))
        self.log("va", (scores.argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class _CrashesAtBatch(pl.Callback):
    """Raises inside the training loop at the n-th batch (a bad batch mid-training), before its step."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen += 1
        if self.seen == self.n:
            raise RuntimeError(f"bad batch {self.n}")


def _fit(callback, tmp_path, *more, plugins=()):
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", callbacks=[callback, *more], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, plugins=list(plugins),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_Tiny(), loader, loader)


def test_logged_keys_can_be_named(tmp_path):
    callback = Babysit(name="tiny", runs_dir=tmp_path, metrics={"train_loss": "loss", "val_loss": "vl", "val_accuracy": "va"}, report=False)
    _fit(callback, tmp_path)
    metrics = [json.loads(line) for line in (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and set(metrics[0]) == {"epoch", "step", "train_loss", "val_loss", "val_accuracy", "lr", "seconds"}
    assert metrics[0]["step"] == 4 and metrics[0]["lr"] == 0.01
    assert callback.report_path is None and bs.load_run(tmp_path / "tiny").status == "completed"


class _ReadEvents(pl.Callback):
    """Reads the live TensorBoard events at each epoch end, after Babysit's own hook, while fit still runs."""

    def __init__(self, folder):
        self.folder, self.seen = folder, []

    def on_train_epoch_end(self, trainer, pl_module):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(self.folder), size_guidance={"scalars": 0, "histograms": 0})
        acc.Reload()
        self.seen.append([(e.step, e.value) for e in acc.Scalars("loss/val")])


def test_tensorboard_events_are_written_while_lightning_trains(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    names = {"train_loss": "loss", "val_loss": "vl", "val_accuracy": "va"}
    reader = _ReadEvents(tmp_path / "tiny" / "tensorboard")
    _fit(Babysit(name="tiny", runs_dir=tmp_path, metrics=names, report=False, tensorboard=True), tmp_path, reader)
    metrics = bs.load_run(tmp_path / "tiny").metrics
    # After epoch 1 the reader saw epoch 1's validation loss, at its step; after epoch 2 both.
    assert [[step for step, _ in seen] for seen in reader.seen] == [[4], [4, 8]]
    assert [v for _, v in reader.seen[-1]] == pytest.approx([m["val_loss"] for m in metrics], rel=1e-6)


def test_16_mixed_precision_hands_its_gradient_scaler_to_the_record(tmp_path):
    # Lightning builds a GradScaler for 16-mixed on CUDA only; on the CPU the plugin takes one.
    from lightning.pytorch.plugins import MixedPrecision

    names = {"train_loss": "loss", "val_loss": "vl", "val_accuracy": "va"}
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    _fit(Babysit(name="amp", runs_dir=tmp_path, metrics=names, report=False), tmp_path, plugins=[plugin])
    record = bs.load_run(tmp_path / "amp")
    facts = record.program["precision"]
    assert facts["iterations"] == 8 == record.summary["steps"] + facts["skipped"]  # 2 epochs of 4 batches, each read once
    assert facts["scale_first"] == 65536.0 and record.probes[0]["layers"]["net"]["dtype"] == "float16"


def test_a_missing_metric_is_named_with_the_keys_that_were_logged(tmp_path):
    with pytest.raises(ConfigError, match=r"reads 'train_loss' and 'val_loss' from trainer.callback_metrics, which has loss, loss_epoch, loss_step, va, vl"):
        _fit(Babysit(name="unnamed", runs_dir=tmp_path, report=False), tmp_path)
    assert bs.load_run(tmp_path / "unnamed").status == "failed"  # the record says so too


def test_an_exception_inside_fit_closes_the_record_as_failed_with_the_exception(tmp_path):
    names = {"train_loss": "loss", "val_loss": "vl", "val_accuracy": "va"}
    with pytest.raises(RuntimeError, match="bad batch 6"):
        _fit(Babysit(name="crashed", runs_dir=tmp_path, metrics=names, report=False), tmp_path, _CrashesAtBatch(6))
    record = bs.load_run(tmp_path / "crashed")
    assert record.status == "failed" and record.summary["stop_reason"] == "RuntimeError: bad batch 6"
    assert record.summary["steps"] == 5 and [m["step"] for m in record.metrics] == [4]  # epoch 1 and one step of epoch 2 are kept
    assert "failed" in CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path)]).output


def test_unknown_metric_names_are_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match="'val_acc'.*did you mean 'val_accuracy'"):
        Babysit(metrics={"val_acc": "acc"})
