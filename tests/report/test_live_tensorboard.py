"""Live TensorBoard: events a recorded run writes while it trains, read by TensorBoard's own reader during the run."""

import threading
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import babysit as bs
from babysit.cli import app

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'babysit[tensorboard]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

from babysit.report.tensorboard import LiveTensorBoard  # noqa: E402


def read_events(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def texts(acc, tag):
    """The text entries of one tag (TensorBoard stores it as TAG/text_summary): (step, text)."""
    return [(e.step, tensor_util.make_ndarray(e.tensor_proto).item().decode()) for e in acc.Tensors(f"{tag}/text_summary")]


class ReadDuringRun:
    """A fit callback (after babysit's own) that reads the run's event folder at each epoch end, while the run still trains."""

    def __init__(self, folder):
        self.folder, self.seen = folder, []

    def on_epoch_end(self, state):
        acc = read_events(self.folder)
        self.seen.append((state.epoch + 1, state.step, acc.Tags(), acc))


def test_a_recorded_run_writes_metrics_probes_and_findings_while_it_trains(digits, tmp_path):
    # Zero weights: the symmetry fault shows at the first probe, so the live diagnosis names it after epoch 1.
    cfg = bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [32], "init": "zeros"},
                           "train": {"epochs": 3, "device": "cpu"}, "watch": {"probes": "light", "tensorboard": True}})  # fmt: skip
    reader = ReadDuringRun(tmp_path / "live" / "tensorboard")
    bs.workflows.start_run(cfg, runs_dir=tmp_path, name="live", progress=False, data=digits, callbacks=[reader])
    record = bs.load_run(tmp_path / "live")

    epoch, step, tags, acc = reader.seen[0]  # read after epoch 1, two epochs before the run ended
    assert epoch == 1 and record.status == "completed" and len(record.metrics) == 3
    assert [e.step for e in acc.Scalars("loss/train")] == [step] == [record.metrics[0]["step"]]
    assert acc.Scalars("loss/val")[0].value == pytest.approx(record.metrics[0]["val_loss"], rel=1e-6)
    # Every probe of epoch 1 is there: one histogram per layer per probed step, the scalars beside.
    probed = [p["step"] for p in record.probes if p["step"] <= step]
    assert probed == [1, 2, 4, 8]  # the light preset; 21 steps per epoch
    for name, stats in record.probes[0]["layers"].items():
        assert [h.step for h in acc.Histograms(f"activations/{name}")] == probed
        assert list(acc.Histograms(f"activations/{name}")[0].histogram_value.bucket) == stats["hist_counts"]
    weight = next(n for n in record.probes[0]["params"] if n.endswith("weight"))
    assert [e.value for e in acc.Scalars(f"grad_norm/{weight}")] == pytest.approx(
        [p["params"][weight]["grad_norm"] for p in record.probes if p["step"] <= step], rel=1e-6
    )
    # The finding, as text, at the step of the epoch where it first fired.
    assert "findings/init_symmetry/text_summary" in tags["tensors"]
    (at, text), = texts(acc, "findings/init_symmetry")
    assert at == step and text.startswith("**error** `init_symmetry` (init):") and "fix:" in text
    assert "status/text_summary" not in tags["tensors"]  # the run has not ended yet

    # After the run: all three epochs, the ending status and the record's whole diagnosis.
    done = read_events(tmp_path / "live" / "tensorboard")
    assert [e.step for e in done.Scalars("loss/train")] == [m["step"] for m in record.metrics]
    assert done.Scalars("accuracy/test")[0].value == pytest.approx(record.summary["test_accuracy"], rel=1e-6)
    assert texts(done, "status") == [(record.summary["steps"], f"**completed** at step {record.summary['steps']}")]
    diagnosis = texts(done, "diagnosis")[0][1]
    assert diagnosis.startswith("1. **error** `init_symmetry` (init):") and "zero" in diagnosis
    assert len(texts(done, "findings/init_symmetry")) == 1  # written once, when it fired


def test_the_cli_flag_writes_live_events_and_the_export_does_not_duplicate_them(tmp_path):
    flags = ["--data", "digits", "--model", "mlp", "--epochs", "1", "--name", "flag", "--runs-dir", str(tmp_path / "runs"), "--tensorboard", "--json"]
    result = CliRunner().invoke(app, ["train", *flags])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "flag"
    assert bs.load_run(run).config["watch"]["tensorboard"] is True
    assert len(read_events(run / "tensorboard").Scalars("loss/val")) == 1
    exported = CliRunner().invoke(app, ["export", "tensorboard", str(run)])
    assert exported.exit_code == 2 and "already holds TensorBoard events" in exported.output and "--out" in exported.output
    assert CliRunner().invoke(app, ["export", "tensorboard", str(run), "--out", str(tmp_path / "again")]).exit_code == 0
    resumed = CliRunner().invoke(app, ["train", "--resume", str(run), "--tensorboard"])
    assert resumed.exit_code == 2 and "drop --tensorboard" in resumed.output


def test_your_own_loop_writes_live_events_and_a_divergence_as_soon_as_it_happens(digits, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=50.0)  # far too high: the loss explodes within the first epoch
    x, y = digits.train.x, digits.train.y
    folder = tmp_path / "runs" / "mine" / "tensorboard"
    with bs.record(model, opt, name="mine", runs_dir=tmp_path / "runs", tensorboard=True) as run:
        for epoch in range(2):
            for i in range(0, len(y), 64):
                loss = F.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if run.log_step(loss):
                    break
            if run.status == "diverged":
                events = texts(read_events(folder), "events")  # read before the run is closed
                break
            run.log_epoch(train_loss=float(loss), val_loss=float(loss))
    assert len(events) == 1 and events[0][0] == run.step and events[0][1].startswith(f"**diverged** at step {run.step}: ")
    done = read_events(folder)
    assert texts(done, "diagnosis")[0][1].startswith("1. **error** `loss_explodes` (training): the loss exploded")
    assert texts(done, "status")[0][1].startswith("**diverged**")
    assert done.Histograms(f"activations/{next(iter(bs.load_run(run.path).probes[0]['layers']))}")


def _probe(step, buckets=4):
    """A probe record as `bs.watch` makes it: one layer's histogram and scalars, one parameter's norms."""
    return {"step": step, "epoch": 1, "params": {"0.weight": {"grad_norm": 0.5, "weight_norm": 2.0, "update_ratio": 1e-3}},
            "layers": {"0": {"type": "ReLU", "act_mean": 0.5, "act_std": 1.0, "dead_fraction": 0.1, "saturated_fraction": 0.0,
                             "hist_edges": [float(i) for i in range(buckets + 1)], "hist_counts": [1] * buckets}}}  # fmt: skip


def _writer_threads():
    return [t for t in threading.enumerate() if t.name.startswith("babysit-tensorboard")]


def test_the_writer_thread_builds_the_events_in_order_and_the_end_joins_it(tmp_path):
    live = LiveTensorBoard(tmp_path / "tb", findings=False)
    assert len(_writer_threads()) == 1
    for step in range(1, 41):
        live.probe(_probe(step))
    live.epoch({"epoch": 1, "step": 40, "train_loss": 2.0, "val_loss": 2.1})
    acc = read_events(tmp_path / "tb")  # the epoch end waited for the writer: everything handed over is in the file
    assert [h.step for h in acc.Histograms("activations/0")] == list(range(1, 41))
    assert [e.step for e in acc.Scalars("loss/val")] == [40]
    live.finish("completed", 40)
    assert _writer_threads() == [] and live.dropped == 0 and live.error is None
    assert texts(read_events(tmp_path / "tb"), "status") == [(40, "**completed** at step 40")]


def test_a_writer_that_falls_behind_leaves_probes_out_and_says_how_many(tmp_path):
    # The first probe's 3,000 layers keep the writer busy while 30 more arrive: with room for one
    # waiting probe, the others are left out rather than slowing training, and counted.
    live = LiveTensorBoard(tmp_path / "tb", findings=False, queue_size=1)
    big = _probe(1)
    big["layers"] |= {f"wide.{i}": big["layers"]["0"] for i in range(3000)}
    live.probe(big)
    for step in range(2, 32):
        live.probe(_probe(step))
    live.epoch({"epoch": 1, "step": 31, "train_loss": 2.0, "val_loss": 2.1})
    with pytest.warns(RuntimeWarning, match=rf"{live.dropped} probed steps were left out, the writer fell 1 behind .*probes.jsonl holds them all"):
        live.finish("completed", 31)
    acc = read_events(tmp_path / "tb")
    written = [h.step for h in acc.Histograms("activations/0")]
    assert live.dropped >= 1 and len(written) + live.dropped == 31 and written == sorted(written) and written[0] == 1
    assert texts(acc, "status") == [(31, f"**completed** at step 31 ({live.dropped} probed steps left out of these events: "
                                         "the writer fell behind; the run record's probes.jsonl holds them)")]  # fmt: skip


def test_a_writer_error_stops_the_live_events_with_a_warning_and_training_goes_on(tmp_path):
    live = LiveTensorBoard(tmp_path / "tb", findings=False, run_dir=tmp_path / "run")
    live.probe(_probe(1))
    broken = _probe(2)
    broken["layers"]["0"]["hist_counts"] = ["not", "a", "count", "!"]  # the writer cannot build this histogram
    live.probe(broken)
    with pytest.warns(RuntimeWarning, match=r"stopped near step 2: writing failed: TypeError: .*babysit export tensorboard .*run --out DIR"):
        assert live.epoch({"epoch": 1, "step": 2, "train_loss": 2.0, "val_loss": 2.1}) == []
    assert isinstance(live.error, TypeError)
    live.probe(_probe(3))  # nothing more is handed over, nothing raises
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # told once, not again at the end
        live.finish("completed", 3)
    assert _writer_threads() == []
    assert [h.step for h in read_events(tmp_path / "tb").Histograms("activations/0")] == [1]  # what came before the error stays readable
