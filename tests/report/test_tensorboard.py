"""`babysit export tensorboard`: a run record read back by TensorBoard's own reader."""

import math

import pytest
from typer.testing import CliRunner

import babysit as bs
from babysit.report.tensorboard import export_tensorboard
from babysit.cli import app

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'babysit[tensorboard]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


@pytest.fixture(scope="module")
def recorded(digits, tmp_path_factory):
    cfg = bs.build_config(
        {"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [32]}, "train": {"epochs": 2, "device": "cpu"}, "watch": {"probes": "full"}}
    )
    root = tmp_path_factory.mktemp("tb")
    bs.workflows.start_run(cfg, runs_dir=root, name="tb1", progress=False, data=digits)
    return bs.load_run(root / "tb1")


def read_events(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_export_writes_the_metrics_and_probes_tensorboard_reads_back(recorded, tmp_path):
    result = CliRunner().invoke(app, ["export", "tensorboard", str(recorded.path), "--out", str(tmp_path / "tb")])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("tb")
    acc = read_events(tmp_path / "tb")
    tags = acc.Tags()

    for key, tag in {"train_loss": "loss/train", "val_loss": "loss/val", "train_accuracy": "accuracy/train",
                     "val_accuracy": "accuracy/val", "lr": "lr"}.items():
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [m["step"] for m in recorded.metrics]
        # Event files store float32.
        assert [e.value for e in events] == pytest.approx([m[key] for m in recorded.metrics], rel=1e-6)
    assert acc.Scalars("accuracy/test")[0].value == pytest.approx(recorded.summary["test_accuracy"], rel=1e-6)

    # The 'full' preset probes every step: one histogram per layer per step.
    layers = recorded.probes[0]["layers"]
    assert {"1", "2", "3"} <= set(layers)  # Linear, ReLU, Linear of the mlp (modules 1..3 after the flatten)
    steps = [p["step"] for p in recorded.probes]
    for name, stats in layers.items():
        hists = acc.Histograms(f"activations/{name}")
        assert [h.step for h in hists] == steps
        first = hists[0].histogram_value
        assert first.num == sum(stats["hist_counts"])
        assert list(first.bucket) == stats["hist_counts"]
        assert list(first.bucket_limit) == pytest.approx(stats["hist_edges"][1:], rel=1e-6)
    relu = next(n for n, s in layers.items() if s["type"] == "ReLU")
    dead = acc.Scalars(f"dead_fraction/{relu}")
    assert [e.value for e in dead] == pytest.approx([p["layers"][relu]["dead_fraction"] for p in recorded.probes], abs=1e-7)

    weight = next(n for n in recorded.probes[0]["params"] if n.endswith("weight"))
    ratios = acc.Scalars(f"update_ratio/{weight}")
    assert [e.value for e in ratios] == pytest.approx([p["params"][weight]["update_ratio"] for p in recorded.probes], rel=1e-6)
    assert 1e-5 < ratios[0].value < 1  # a real ratio, not a placeholder
    grad = acc.Scalars(f"grad_norm/{weight}")
    assert len(grad) == len(steps) and all(e.value > 0 for e in grad)
    # A zero-initialised bias has a NaN first ratio, which is left out rather than plotted.
    bias = next(n for n in recorded.probes[0]["params"] if n.endswith("bias"))
    if math.isnan(recorded.probes[0]["params"][bias]["update_ratio"]):
        assert len(acc.Scalars(f"update_ratio/{bias}")) == len(steps) - 1
    assert "histograms" in tags and len(tags["histograms"]) == len(layers)


def test_export_defaults_to_the_run_folder_and_refuses_a_non_run(recorded, tmp_path):
    out = export_tensorboard(recorded)
    assert out == recorded.path / "tensorboard" and read_events(out).Scalars("loss/val")
    result = CliRunner().invoke(app, ["export", "tensorboard", str(tmp_path)])
    assert result.exit_code == 2 and "not a run record" in result.output


def test_event_checksums_are_tensorboards_masked_crc32c():
    # The live writer's own event files (report.event_file) frame each event as TensorBoard's reader checks it.
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as reference

    from babysit.report.event_file import masked_crc32c

    for data in (b"", b"\x00" * 8, bytes(range(256)) * 13, "live events, écrits".encode()):
        assert masked_crc32c(data) == reference(data)
