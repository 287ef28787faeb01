"""The Hugging Face Trainer callback: the example's run record renders, a rate far too high is named, the Trainer's own knobs are honoured."""

import atexit
import importlib.util
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="transformers is an optional extra: pip install 'babysit[hf]'")
pytest.importorskip("accelerate", reason="the Trainer needs accelerate: pip install 'babysit[hf]'")

from transformers import Trainer, TrainingArguments  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import babysit as bs  # noqa: E402
from babysit.cli import app  # noqa: E402
from babysit.errors import ConfigError  # noqa: E402
from babysit.integrations.huggingface import Babysit  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hf_trainer.py"
STEPS = 45  # 1437 training images in batches of 32


@pytest.fixture(scope="module")
def example():
    return runpy.run_path(str(EXAMPLE))


def _cli(*args: str) -> str:
    shown = CliRunner().invoke(app, list(args))
    assert shown.exit_code == 0, shown.output
    return shown.output


def test_example_writes_a_run_record_that_report_and_runs_read(example, tmp_path, capsys):
    path = example["main"](["--out", str(tmp_path), "--name", "good", "--quiet"])
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {Path(path) / 'report.html'}"
    record = bs.load_run(path)
    assert record.status == "completed" and record.summary["steps"] == 5 * STEPS
    # One line per evaluation (eval_strategy="epoch"), at the optimiser steps the Trainer took.
    assert [m["step"] for m in record.metrics] == [STEPS * e for e in range(1, 6)]
    assert set(record.metrics[0]) == {"epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    first, last = record.metrics[0], record.metrics[-1]
    assert last["train_loss"] < first["train_loss"] < 2.31  # ln(10) at chance
    assert last["val_accuracy"] > 0.4  # chance is 0.1
    assert first["lr"] < 5e-3 and record.config["train"]["lr"] == 5e-3  # linear decay after warm-up; config keeps the peak
    # Inside each transformer block: attention projections, feed-forward and its GELU, layer norms.
    layers = set(record.probes[0]["layers"])
    block = "bert.encoder.layer.1."
    for inside in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                   "attention.output.LayerNorm", "intermediate.dense", "intermediate.intermediate_act_fn", "output.dense", "output.LayerNorm"):  # fmt: skip
        assert block + inside in layers, inside
    assert all(v["grad_norm"] > 0 for v in record.probes[0]["params"].values())
    # The program observer read the loss against the model's logits: the Trainer computes cross-entropy.
    assert record.program["loss"]["matches"]["cross_entropy"] == record.program["loss"]["labels"] > 5
    assert record.program["where"] == "hugging face trainer" and record.events[0]["detail"] == "hugging face trainer"
    assert not [f for f in bs.diagnose(record) if f.severity == "error"]
    assert _cli("report", path, "--no-per-class").strip().splitlines()[-1] == str(Path(path) / "report.html")
    assert "good" in _cli("runs", "--runs-dir", str(tmp_path))


def test_rate_far_too_high_without_warm_up_stops_and_is_named(example, tmp_path, capsys):
    path = example["main"](["--lr", "0.5", "--warmup", "0", "--out", str(tmp_path), "--name", "broken", "--quiet"])
    record = bs.load_run(path)
    assert record.status == "diverged"
    diverged = next(e for e in record.events if e["event"] == "diverged")
    assert diverged["step"] < STEPS and record.summary["steps"] == diverged["step"]  # control.should_training_stop: no further step
    first = bs.diagnose(record)[0]
    assert first.rule == "loss_explodes" and "learning rate" in first.fix
    assert "loss_explodes" in capsys.readouterr().out  # the findings are printed when training ends
    _cli("report", path, "--no-per-class")
    assert "diverged" in _cli("runs", "--runs-dir", str(tmp_path))


def _trainer(example, callback, scratch, **overrides) -> Trainer:
    train, val = example["digit_sentences"]()
    hf_logging.set_verbosity_error()
    settings = dict(output_dir=scratch, learning_rate=1e-3, per_device_train_batch_size=16, per_device_eval_batch_size=64,
                    save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True)  # fmt: skip
    args = TrainingArguments(**{**settings, **overrides})
    return Trainer(example["tiny_bert"](), args, train_dataset=train[:192], eval_dataset=val[:64], compute_metrics=example["accuracy"], callbacks=[callback])


def test_gradient_accumulation_eval_steps_and_logging_steps(example, tmp_path):
    # 2 micro-batches per optimiser step, an evaluation every 2 steps, the Trainer's own loss logged every step.
    callback = Babysit(name="accumulated", runs_dir=tmp_path, report=False, tensorboard=True)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = _trainer(example, callback, scratch, gradient_accumulation_steps=2, max_steps=6,
                           eval_strategy="steps", eval_steps=2, logging_steps=1)  # fmt: skip
        trainer.train()
    record = bs.load_run(tmp_path / "accumulated")
    assert record.status == "completed" and record.summary["steps"] == trainer.state.global_step == 6
    assert [m["step"] for m in record.metrics] == [2, 4, 6]
    assert [p["step"] for p in record.probes] == [1, 2, 4]
    # Each line's train_loss is the mean of its steps' losses, as the Trainer itself logs them (it sums
    # each step's micro-batch losses, each a share of the step's): a wrong normalisation is off by 2x.
    logged = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    for m in record.metrics:
        assert m["train_loss"] == pytest.approx((logged[m["step"] - 1] + logged[m["step"]]) / 2, rel=1e-3)
        assert m["val_loss"] == pytest.approx(next(h["eval_loss"] for h in trainer.state.log_history if h.get("step") == m["step"] and "eval_loss" in h))
    # tensorboard=True writes the same metrics as TensorBoard events (as bs.record's option does)
    if importlib.util.find_spec("tensorboard") is not None:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tmp_path / "accumulated" / "tensorboard"), size_guidance={"scalars": 0}).Reload()
        losses = [e.value for e in events.Scalars("loss/val")]
        assert losses == pytest.approx([m["val_loss"] for m in record.metrics], rel=1e-5)


def test_no_evaluation_is_refused_with_the_setting_to_change(example, tmp_path):
    with tempfile.TemporaryDirectory() as scratch:
        trainer = _trainer(example, Babysit(name="blind", runs_dir=tmp_path, report=False), scratch, eval_strategy="no", max_steps=2)
        with pytest.raises(ConfigError, match=r"TrainingArguments\(eval_strategy='no'\) never evaluates: set eval_strategy='epoch'"):
            trainer.train()
    assert not (tmp_path / "blind").exists()


def test_a_missing_metric_is_named_with_the_keys_the_evaluation_has(example, tmp_path):
    callback = Babysit(name="renamed", runs_dir=tmp_path, report=False, metrics={"val_loss": "eval_xent"})
    with tempfile.TemporaryDirectory() as scratch:
        trainer = _trainer(example, callback, scratch, eval_strategy="steps", eval_steps=1, max_steps=1)
        with pytest.raises(ConfigError, match=r"'eval_xent', which has epoch, eval_accuracy, eval_loss, "):
            trainer.train()
    assert bs.load_run(tmp_path / "renamed").status == "failed"  # the record says so too


def _fail_at_training_forward(model, n):
    """A forward pre-hook on the encoder that raises at the model's n-th training forward (a bad batch mid-training)."""
    calls = []

    def hook(module, args):
        calls.append(module.training)
        if sum(calls) == n and module.training:
            raise RuntimeError(f"bad batch at training forward {n}")

    model.bert.encoder.register_forward_pre_hook(hook)


def test_an_exception_inside_training_closes_the_record_as_failed_when_the_notebook_cell_ends(example, tmp_path, capsys):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    callback = Babysit(name="crashed", runs_dir=tmp_path, report=False)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            shell.user_ns["trainer"] = trainer = _trainer(example, callback, scratch, max_steps=6, eval_strategy="steps", eval_steps=2)
            _fail_at_training_forward(trainer.model, 3)
            result = shell.run_cell("trainer.train()", store_history=False)
    finally:
        atexit.unregister(shell.atexit_operations)
        InteractiveShell.clear_instance()
    assert isinstance(result.error_in_exec, RuntimeError)  # the notebook shows the exception, as it would without babysit
    record = bs.load_run(tmp_path / "crashed")
    assert record.status == "failed" and record.summary["stop_reason"] == "RuntimeError: bad batch at training forward 3"
    assert record.summary["steps"] == 2 and [m["step"] for m in record.metrics] == [2]  # what came before the crash is kept
    assert "failed" in _cli("runs", "--runs-dir", str(tmp_path))


def test_an_uncaught_exception_inside_training_closes_the_record_as_failed_when_the_script_ends(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(f"""
import runpy, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_huggingface import _fail_at_training_forward
from transformers import Trainer, TrainingArguments
from babysit.integrations.huggingface import Babysit
example = runpy.run_path({str(EXAMPLE)!r})
train, val = example["digit_sentences"]()
args = TrainingArguments(output_dir={str(tmp_path / "scratch")!r}, max_steps=6, eval_strategy="steps", eval_steps=2, per_device_train_batch_size=16,
                         save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
trainer = Trainer(example["tiny_bert"](), args, train_dataset=train[:192], eval_dataset=val[:64],
                  callbacks=[Babysit(name="crashed", runs_dir={str(tmp_path)!r}, report=False)])
_fail_at_training_forward(trainer.model, 4)
trainer.train()
""")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.strip().endswith("RuntimeError: bad batch at training forward 4"), done.stderr[-2000:]
    record = bs.load_run(tmp_path / "crashed")
    assert record.status == "failed" and record.summary["stop_reason"] == "RuntimeError: bad batch at training forward 4"
    assert record.summary["steps"] == 3 and [m["step"] for m in record.metrics] == [2]


def test_unknown_metric_names_are_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match="'val_acc'.*did you mean 'val_accuracy'"):
        Babysit(metrics={"val_acc": "eval_acc"})
