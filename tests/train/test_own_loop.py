"""bs.record: a hand-written loop writes the run record `babysit train` writes."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import babysit as bs
from babysit.cli import app
from babysit.errors import ConfigError


def _data(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return bs.Dataset.from_arrays(x, y, seed=seed)


def _loop(run, model, opt, data, epochs=3, guard=False):
    for _ in range(epochs):
        model.train()
        for i in range(0, len(data.train), 32):
            loss = F.cross_entropy(model(data.train.x[i : i + 32]), data.train.y[i : i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if guard and run.log_step(loss):
                return
        model.eval()
        with torch.no_grad():
            out = model(data.val.x)
        run.log_epoch(
            train_loss=loss.item(),
            val_loss=F.cross_entropy(out, data.val.y),
            val_accuracy=(out.argmax(1) == data.val.y).float().mean(),
        )


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 3))


def test_record_writes_the_run_record(tmp_path):
    data = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with bs.record(model, opt, name="mine", runs_dir=tmp_path, config={"batch_size": 32}) as run:
        _loop(run, model, opt, data, epochs=3)
    steps_per_epoch = math.ceil(len(data.train) / 32)  # 216 train samples -> 7 batches
    rec = bs.load_run(tmp_path / "mine")
    assert rec.status == "completed" and len(rec.metrics) == 3
    assert [m["epoch"] for m in rec.metrics] == [1, 2, 3]
    assert [m["step"] for m in rec.metrics] == [steps_per_epoch * e for e in (1, 2, 3)]
    assert set(rec.metrics[0]) == {"epoch", "step", "train_loss", "val_loss", "val_accuracy", "lr", "seconds"}
    assert rec.metrics[0]["lr"] == 0.1
    # light preset: steps 1, 2, 4, 8, 16 of the 21.
    assert [p["step"] for p in rec.probes] == [1, 2, 4, 8, 16]
    assert [p["epoch"] for p in rec.probes] == [1, 1, 1, 2, 3]
    assert set(rec.probes[0]["layers"]) == {"0", "1", "2"} and "0.weight" in rec.probes[0]["params"]
    assert rec.config["train"] == {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0, "batch_size": 32}
    assert [e["event"] for e in rec.events] == ["started", "completed"]
    assert rec.summary["steps"] == 21 and rec.summary["best_epoch"] == rec.best()["epoch"]
    assert rec.summary["best_val_accuracy"] == max(m["val_accuracy"] for m in rec.metrics)
    # Hooks are gone after close: more steps are not counted.
    opt.step()
    assert run.step == 21
    # The diagnosis, the report and the listing read it unchanged.
    assert bs.diagnose(run) == bs.diagnose(rec)
    report = bs.run_report(tmp_path / "mine")
    assert report.classes is None and "best.pt" in report.classes_note
    result = CliRunner().invoke(app, ["report", str(tmp_path / "mine")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mine" / "report.html").is_file()
    listed = CliRunner().invoke(app, ["runs", "--runs-dir", str(tmp_path)])
    assert listed.exit_code == 0 and "mine" in listed.output


def test_log_epoch_refuses_unknown_metrics(tmp_path):
    model = _model()
    run = bs.record(model, torch.optim.Adam(model.parameters()), name="x", runs_dir=tmp_path, probes="off")
    with pytest.raises(ConfigError, match="unknown metric 'val_acc'.*did you mean 'val_accuracy'"):
        run.log_epoch(train_loss=1.0, val_loss=1.0, val_acc=0.5)
    with pytest.raises(ConfigError, match="needs val_loss"):
        run.log_epoch(train_loss=1.0)
    run.close()
    with pytest.raises(ConfigError, match="is closed"):
        run.log_epoch(train_loss=1.0, val_loss=1.0)
    assert bs.load_run(tmp_path / "x").metrics == []


def test_log_step_stops_a_diverging_loop(tmp_path):
    data = _data()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=50.0)
    with bs.record(model, opt, name="boom", runs_dir=tmp_path) as run:
        _loop(run, model, opt, data, epochs=3, guard=True)
    rec = bs.load_run(tmp_path / "boom")
    assert rec.status == "diverged" and run.step < 21
    assert "initial loss" in rec.summary["stop_reason"] or "loss became" in rec.summary["stop_reason"]
    assert [e["event"] for e in rec.events][-1] == "diverged"
    first = bs.diagnose(rec)[0]
    assert first.rule == "loss_explodes" and "learning rate" in (first.title + first.fix).lower()


def test_failed_loop_and_attached_check(tmp_path):
    data = _data()
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    report = bs.check(model, data, bs.Recipe(optimizer="adam", lr=1e-3, batch_size=32), only=["initial_loss"], progress=False)
    with pytest.raises(RuntimeError):
        with bs.record(model, opt, name="f", runs_dir=tmp_path) as run:
            run.attach_check(report)
            raise RuntimeError("out of memory")
    rec = bs.load_run(tmp_path / "f")
    assert rec.summary == {"status": "failed", "stop_reason": "RuntimeError: out of memory", "steps": 0}
    saved = json.loads((tmp_path / "f" / "check.json").read_text())
    assert [c["name"] for c in saved["checks"]] == ["initial_loss"]
    assert run.findings == bs.merge_findings(rec, saved)


def test_bad_settings_leave_no_run(tmp_path):
    model = _model()
    with pytest.raises(ConfigError, match="probe preset"):
        bs.record(model, torch.optim.SGD(model.parameters(), lr=0.1), name="bad", runs_dir=tmp_path, probes="lite")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="must be one of"):
        bs.record(model, torch.optim.SGD(model.parameters(), lr=0.1), name="ok", runs_dir=tmp_path).close("done")
