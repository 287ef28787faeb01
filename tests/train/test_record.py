"""The run record (docs/run-record.md): written as the run goes, read back by `load_run`."""

import json
import math

import pytest
import torch

import babysit as bs
from babysit.errors import ConfigError, DataError
from babysit.train.record import create_run_dir, read_jsonl


def digits_cfg(**train):
    return bs.build_config(
        {"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [32]}, "train": {"epochs": 3, "device": "cpu", **train}}
    )


def test_a_recorded_run_writes_the_documented_schema(digits, tmp_path):
    cfg = digits_cfg()
    done = bs.workflows.start_run(cfg, runs_dir=tmp_path, name="r1", progress=False, data=digits)
    path = tmp_path / "r1"
    assert done.record == path
    assert {p.name for p in path.iterdir()} == {
        "config.json", "env.json", "metrics.jsonl", "probes.jsonl", "events.jsonl", "summary.json", "program.json", "checkpoints",
    }
    run = bs.load_run(path)
    assert run.config == cfg.to_dict() and bs.build_config(run.config) == cfg
    assert {"python", "torch", "babysit", "device", "threads", "hostname", "start_time"} <= set(run.env)
    assert run.env["device"] == "cpu"
    assert [m["epoch"] for m in run.metrics] == [1, 2, 3]
    assert [{k: v for k, v in m.items() if k != "seconds"} for m in run.metrics] == [
        {k: v for k, v in m.items() if k != "seconds"} for m in done.result.history.records
    ]
    steps_per_epoch = math.ceil(len(digits.train) / cfg.train.batch_size)
    # The default 'light' preset: steps 1, 2, 4, 8, 16, 32 of the 3 x 13 steps.
    assert [p["step"] for p in run.probes] == [s for s in (1, 2, 4, 8, 16, 32) if s <= 3 * steps_per_epoch]
    probe = run.probes[0]
    assert set(probe) == {"step", "epoch", "layers", "params"}
    assert probe["layers"]["2"]["type"] == "ReLU" and 0 <= probe["layers"]["2"]["dead_fraction"] <= 1
    assert set(probe["layers"]["1"]) == {"type", "act_mean", "act_std", "hist_edges", "hist_counts"}
    assert set(probe["params"]["1.weight"]) == {"grad_norm", "weight_norm", "update_ratio"}
    assert [e["event"] for e in run.events] == ["started", "completed"]
    assert run.summary["status"] == "completed" and run.summary["test_accuracy"] == done.result.test_accuracy
    assert run.summary["best_epoch"] == run.best()["epoch"] and run.summary["steps"] == 3 * steps_per_epoch
    assert bs.train.list_runs(tmp_path)[0].name == "r1" and repr(run).startswith("RunRecord('r1'")


def test_probes_off_writes_no_probe_lines(digits, tmp_path):
    cfg = bs.build_config({**digits_cfg().to_dict(), "watch": {"probes": "off"}})
    bs.workflows.start_run(cfg, runs_dir=tmp_path, name="quiet", progress=False, data=digits)
    assert bs.load_run(tmp_path / "quiet").probes == []


def test_a_line_cut_short_by_a_kill_is_skipped_but_damage_elsewhere_is_reported(tmp_path):
    f = tmp_path / "metrics.jsonl"
    f.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    assert read_jsonl(f) == [{"epoch": 1}, {"epoch": 2}]
    f.write_text('{"epoch": 1}\n{"ep\n{"epoch": 3}\n')
    with pytest.raises(DataError, match="line 2"):
        read_jsonl(f)


def test_a_killed_run_without_summary_is_incomplete(tmp_path):
    path = tmp_path / "killed"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(digits_cfg().to_dict()))
    (path / "metrics.jsonl").write_text('{"epoch": 1, "val_accuracy": 0.5}\n')
    run = bs.load_run(path)
    assert run.status == "incomplete" and run.summary is None and run.best()["epoch"] == 1


def test_run_names_never_clobber_an_existing_run(tmp_path):
    create_run_dir(tmp_path, "taken", stem="x")
    with pytest.raises(ConfigError, match="already exists"):
        create_run_dir(tmp_path, "taken", stem="x")
    with pytest.raises(ConfigError, match="no slashes"):
        create_run_dir(tmp_path, "../escape", stem="x")
    generated = {create_run_dir(tmp_path, None, stem="digits-mlp").name for _ in range(3)}
    assert len(generated) == 3 and all(n.startswith("digits-mlp-") for n in generated)


def test_not_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="is not a run record"):
        bs.load_run(tmp_path)


def test_resume_refuses_finished_runs(digits, tmp_path):
    bs.workflows.start_run(digits_cfg(epochs=1), runs_dir=tmp_path, name="done", progress=False, data=digits)
    with pytest.raises(ConfigError, match="already completed"):
        bs.workflows.resume_run(tmp_path / "done")
    bs.workflows.start_run(digits_cfg(optimizer="sgd", lr=1e6), runs_dir=tmp_path, name="boom", progress=False, data=digits)
    with pytest.raises(ConfigError, match="diverged; resuming would repeat it"):
        bs.workflows.resume_run(tmp_path / "boom")


def test_a_run_failing_before_it_starts_leaves_no_empty_folder(tmp_path):
    cfg = bs.build_config({"data": {"name": "arrays", "path": str(tmp_path / "missing.npz")}, "train": {"epochs": 1, "device": "cpu"}})
    with pytest.raises(DataError, match="missing.npz' does not exist"):
        bs.workflows.start_run(cfg, runs_dir=tmp_path, name="never", progress=False)
    assert not (tmp_path / "never").exists()


class Boom:
    def on_epoch_end(self, state):
        if state.epoch == 1:
            raise RuntimeError("disk on fire")


def test_a_crashed_run_is_recorded_as_failed_and_can_be_resumed(digits, tmp_path):
    with pytest.raises(RuntimeError, match="disk on fire"):
        bs.workflows.start_run(digits_cfg(epochs=3), runs_dir=tmp_path, name="crash", progress=False, data=digits, callbacks=[Boom()])
    run = bs.load_run(tmp_path / "crash")
    assert run.status == "failed" and "disk on fire" in run.summary["stop_reason"]
    assert len(run.metrics) == 2  # the epochs before the crash are kept
    resumed = bs.workflows.resume_run(tmp_path / "crash", progress=False)
    reference = bs.workflows.start_run(digits_cfg(epochs=3), runs_dir=tmp_path, name="ref", progress=False, data=digits)
    assert resumed.result.test_loss == reference.result.test_loss
    after = bs.load_run(tmp_path / "crash")
    assert after.status == "completed" and [m["epoch"] for m in after.metrics] == [1, 2, 3]
    assert [e["event"] for e in after.events] == ["started", "failed", "resumed", "completed"]
    assert [p["step"] for p in after.probes] == [p["step"] for p in bs.load_run(tmp_path / "ref").probes]


def test_resume_refuses_data_whose_preprocessing_changed(digits, tmp_path):
    with pytest.raises(RuntimeError, match="disk on fire"):
        bs.workflows.start_run(digits_cfg(epochs=3), runs_dir=tmp_path, name="crash", progress=False, data=digits, callbacks=[Boom()])
    last = tmp_path / "crash" / "checkpoints" / "last.pt"
    checkpoint = bs.train.load_checkpoint(last)
    checkpoint["preprocessor"]["mean"] += 1.0  # as if the training split had changed
    torch.save(checkpoint, last)
    with pytest.raises(DataError, match="the data changed since this run started"):
        bs.workflows.resume_run(tmp_path / "crash", progress=False)


def test_the_diagnosis_reads_a_recorded_run(digits, tmp_path):
    bs.workflows.start_run(digits_cfg(optimizer="sgd", lr=1e6), runs_dir=tmp_path, name="boom", progress=False, data=digits)
    assert bs.diagnose(bs.load_run(tmp_path / "boom"))[0].rule == "loss_explodes"

    dead = bs.build_config({**digits_cfg(epochs=1).to_dict(), "model": {"name": "mlp", "hidden": [64], "bias": -30.0}})
    bs.workflows.start_run(dead, runs_dir=tmp_path, name="dead", progress=False, data=digits)
    record = bs.load_run(tmp_path / "dead")
    assert record.probes[0]["layers"]["2"]["dead_fraction"] > 0.9
    assert "dead_relu_at_init" in [f.rule for f in bs.diagnose(record)]


def test_program_facts_are_rewritten_at_most_a_share_of_the_time_and_the_last_ones_always_land(tmp_path, monkeypatch):
    """program.json's atomic rewrite (an fsync) would cost a small model a few per cent per epoch: it waits 100x its own cost,
    and the facts held meanwhile are written when the run ends, as it ends (finished or failed)."""
    from babysit.train import record as rec

    clock = iter([0.0, 0.01, 0.5, 0.9, 1.02, 1.03, 1.2, 5.0, 5.0, 6.0, 6.0]).__next__  # perf_counter readings, two per write
    monkeypatch.setattr(rec.time, "perf_counter", clock)
    for ending in ("finish", "fail"):
        path = tmp_path / ending
        path.mkdir()
        r = rec.RunRecorder(path, {})
        read = lambda: json.loads((path / "program.json").read_text())  # noqa: E731
        r.program({"steps": 1})  # written (0.00 -> 0.01): next due at 0.01 + 0.01 / 0.01 = 1.01
        r.program({"steps": 2})  # 0.5: held
        r.program({"steps": 3})  # 0.9: held
        assert read() == {"steps": 1}
        r.program({"steps": 4})  # 1.02: due, written
        assert read() == {"steps": 4}
        r.program({"steps": 5})  # 1.2: held
        if ending == "finish":
            r.finish({"status": "completed", "steps": 5})
        else:
            r.fail(RuntimeError("boom"))
        assert read() == {"steps": 5}
        r.program({"steps": 6})  # after the end (a callback closing late): written at once
        assert read() == {"steps": 6}
        clock = iter([0.0, 0.01, 0.5, 0.9, 1.02, 1.03, 1.2, 5.0, 5.0, 6.0, 6.0]).__next__
        monkeypatch.setattr(rec.time, "perf_counter", clock)
