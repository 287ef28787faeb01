"""Concurrent runs of one name: the second is told which process writes the run, never that the folder "is not a run";
runs without a name started at the same moment get distinct folders."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import babysit as bs
from babysit.errors import ConfigError
from babysit.train.record import create_run_dir, hold_run, release_run, run_holder
from babysit.workflows.recorded import resume_run

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
TRAIN = ["train", "--data", "digits", "--model", "mlp", "--model.hidden=[32]", "--epochs", "15", "--train.batch_size=10",
         "--train.device=cpu", "--watch.probes=off", "--json"]  # fmt: skip
DEADLINE_S = 300


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**ENV, "BABYSIT_RUNS_DIR": str(tmp_path / "runs"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.Popen([sys.executable, "-m", "babysit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)


def test_a_second_run_of_the_same_name_names_the_process_writing_it(tmp_path: Path) -> None:
    first = start([*TRAIN, "--name", "same"], tmp_path)
    run = tmp_path / "runs" / "same"
    end = time.monotonic() + DEADLINE_S
    while not (run / "config.json").is_file():
        assert first.poll() is None and time.monotonic() < end, first.communicate()
        time.sleep(0.05)
    second = start([*TRAIN, "--name", "same"], tmp_path)
    out, err = second.communicate(timeout=DEADLINE_S)
    resumer = start(["train", "--resume", str(run)], tmp_path)
    r_out, r_err = resumer.communicate(timeout=DEADLINE_S)
    first_running = first.poll() is None
    first.communicate(timeout=DEADLINE_S)
    assert first.returncode == 0
    assert second.returncode == 2 and "is not a run" not in err, err
    if first_running:  # (on a fast machine the first may already have finished: then "already exists (completed)")
        assert f"is being written by another babysit process (pid {first.pid})" in err, err
        assert resumer.returncode == 2 and f"pid {first.pid}" in r_err, r_err
    assert bs.load_run(run).status == "completed" and not (run / ".lock").exists()


def test_two_runs_of_one_name_started_together_never_read_as_not_a_run(tmp_path: Path) -> None:
    both = [start([*TRAIN, "--epochs", "2", "--name", "twin"], tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=DEADLINE_S), p.communicate()[1]) for p in both]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is not a run" not in refused and ("is being written by another babysit process" in refused or "already exists" in refused), refused


def _hold(path: str, ready, done) -> None:
    hold_run(Path(path))
    ready.set()
    done.wait(60)


def test_a_run_held_by_another_process_is_refused_by_name_and_resume_with_its_pid(tmp_path: Path) -> None:
    run = tmp_path / "held"
    run.mkdir()
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(run), ready, done))
    holder.start()
    try:
        assert ready.wait(60)
        assert run_holder(run) == holder.pid
        with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
            create_run_dir(tmp_path, "held", stem="x")
        with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
            hold_run(run)
    finally:
        done.set()
        holder.join(60)
    assert run_holder(run) is None  # the kernel dropped the lock with the process: a killed writer never blocks the folder
    hold_run(run)
    release_run(run)


def test_a_resume_of_a_run_being_written_is_refused_before_it_touches_the_record(tmp_path: Path, digits) -> None:
    cfg = bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1, "device": "cpu"}})
    bs.workflows.start_run(cfg, runs_dir=tmp_path, name="r", progress=False, data=digits)
    (tmp_path / "r" / "summary.json").unlink()  # as if killed
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path / "r"), ready, done))
    holder.start()
    try:
        assert ready.wait(60)
        before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file() and p.name != ".lock"}
        with pytest.raises(ConfigError, match=f"is being written by another babysit process \\(pid {holder.pid}\\)"):
            resume_run(tmp_path / "r", progress=False, data=digits)
        assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file() and p.name != ".lock"} == before
    finally:
        done.set()
        holder.join(60)


def _make(root: str, queue) -> None:
    queue.put(create_run_dir(root, None, stem="digits-mlp").name)


def test_runs_without_a_name_started_together_get_distinct_folders(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_make, args=(str(tmp_path), queue)) for _ in range(6)]
    for p in procs:
        p.start()
    names = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert len(set(names)) == 6 and all(n.startswith("digits-mlp-") for n in names)
