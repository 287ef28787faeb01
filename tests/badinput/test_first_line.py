"""A long command shows it is working before its work is done: `train` prints its first line before the first epoch ends.

Judged by order, not by a clock: when the first line reaches the pipe (where the live bar cannot
draw), the run folder holds no epoch yet. A command that printed nothing until its first epoch
ended would look hung for as long as that epoch takes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path


def test_train_says_what_it_trains_before_its_first_epoch_ends(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BABYSIT_RUNS_DIR": str(tmp_path / "runs")}
    args = [sys.executable, "-m", "babysit", "train", "--data", "digits", "--model", "mlp", "--train.epochs=3", "--name", "first"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        metrics = tmp_path / "runs" / "first" / "metrics.jsonl"
        epochs_then = len(metrics.read_text().splitlines()) if metrics.is_file() else 0
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert first.startswith("training Sequential on 1,295 samples: 3 epochs"), first
    assert epochs_then == 0, "the first line came only after an epoch had ended"
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2, 3]
