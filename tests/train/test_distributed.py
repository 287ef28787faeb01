"""`fit` under torch.distributed: two gloo processes compute the one-process run and write one record."""

import json
import math
import os
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from typer.testing import CliRunner

import babysit as bs
from babysit.cli import app
from babysit.errors import ConfigError
from babysit.train import distributed

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch was built without torch.distributed (gloo)")

ROOT = Path(__file__).resolve().parents[2]
# The digits' 1293 training samples in global batches of 100: the last batch of 93 splits 47 / 46.
CONFIG = {
    "data": {"name": "digits"},
    "model": {"name": "mlp", "hidden": [32], "activation": "relu", "init": "he"},  # no BatchNorm: its statistics are per shard
    "train": {"optimizer": "momentum", "lr": 0.05, "epochs": 2, "batch_size": 100},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _StopOnOneRank:
    """Asks to stop on rank 1 only, at step 3: the other rank must stop there too, not wait for it."""

    def on_batch_end(self, state):
        if distributed.rank() == 1 and state.step == 3:
            state.request_stop("stopped", "rank 1 asked")


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        done = bs.workflows.start_run(bs.build_config(CONFIG), runs_dir=Path(out) / "runs", name="ddp", progress=False)
        try:
            bs.workflows.start_run(bs.build_config(CONFIG), runs_dir=Path(out) / "runs", name="ddp", progress=False)
            taken = "no error"
        except ConfigError as e:  # rank 0's error reaches every rank
            taken = str(e)
        torch.manual_seed(0)
        x = torch.randn(120, 4)
        tiny = bs.Dataset.from_arrays(x, (x[:, 0] > 0).long(), x_test=x[:20], y_test=(x[:20, 0] > 0).long())
        stopped = bs.fit(torch.nn.Linear(4, 2), tiny, bs.Recipe(epochs=5, batch_size=10), callbacks=[_StopOnOneRank()], progress=False)
        result = {
            "record": str(done.record),
            "history": done.result.history.records,
            "test_loss": done.result.test_loss,
            "taken": taken,
            "stopped": [stopped.status, stopped.stop_reason, stopped.history.records[-1]["step"]],
        }
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one_process_and_write_one_record(tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    one = bs.workflows.start_run(bs.build_config(CONFIG), runs_dir=tmp_path / "single", name="one", progress=False)

    for got in ranks:  # every rank ends with the one-process numbers
        assert len(got["history"]) == 2
        for mine, ref in zip(got["history"], one.result.history.records):
            for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
                assert math.isclose(mine[key], ref[key], rel_tol=1e-4), (key, mine[key], ref[key])
            assert mine["step"] == ref["step"] == 13 * mine["epoch"]  # 13 global batches per epoch, not 26
        assert math.isclose(got["test_loss"], one.result.test_loss, rel_tol=1e-4)
        assert "already exists" in got["taken"]
        # A stop on one rank stops both at the same step, with its reason: no rank hangs.
        assert got["stopped"] == ["stopped", "rank 1 asked", 3]

    records = [p for p in (tmp_path / "runs").iterdir() if (p / "config.json").is_file()]
    assert [p.name for p in records] == ["ddp"] and ranks[0]["record"] == ranks[1]["record"] == str(records[0])
    rec = bs.load_run(records[0])
    assert rec.status == "completed" and len(rec.metrics) == 2
    assert [e["event"] for e in rec.events] == ["started", "completed"]  # written once, by rank 0
    assert [p["step"] for p in rec.probes] == [1, 2, 4, 8, 16]  # probed on rank 0 only: no step twice
    assert (records[0] / "checkpoints" / "best.pt").is_file() and (records[0] / "checkpoints" / "last.pt").is_file()


def test_one_process_is_not_distributed():
    assert not distributed.active() and distributed.rank() == 0 and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.init_from_env() is False  # no WORLD_SIZE: plain `python script.py`
    x, y = torch.arange(10.0).reshape(5, 2), torch.arange(5)
    assert distributed.shard(x, y)[1].tolist() == [0, 1, 2, 3, 4]


def _torchrun(tmp_path, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(_free_port())]
    out = subprocess.run([*cmd, str(ROOT / "examples" / "ddp_digits.py"), "--out", str(tmp_path), *args], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow  # two torchrun launches of two processes each
def test_ddp_example_under_torchrun_renders_and_names_a_broken_learning_rate(tmp_path):
    printed = _torchrun(tmp_path, "--epochs", "2", "--name", "good")
    assert printed.count("report: ") == 1 and printed.strip().splitlines()[-1] == f"report: {tmp_path / 'good' / 'report.html'}"
    shown = CliRunner().invoke(app, ["report", str(tmp_path / "good")])
    assert shown.exit_code == 0, shown.output
    assert bs.load_run(tmp_path / "good").best()["val_accuracy"] > 0.85

    _torchrun(tmp_path, "--lr", "50", "--epochs", "2", "--name", "broken")
    broken = bs.load_run(tmp_path / "broken")
    assert broken.status == "diverged"
    first = bs.diagnose(broken)[0]
    assert first.rule == "loss_explodes" and "learning rate" in first.fix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "good"]


@pytest.mark.slow
def test_ddp_example_runs_as_one_plain_process(tmp_path, capsys):
    main = runpy.run_path(str(ROOT / "examples" / "ddp_digits.py"))["main"]
    path = main(["--epochs", "1", "--out", str(tmp_path), "--name", "single"])
    assert bs.load_run(path).status == "completed"
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {Path(path) / 'report.html'}"
