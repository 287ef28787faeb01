"""SIGKILL at seeded random moments of `babysit train`, `tune --mode caviar` and `doctor`; rerunning finishes with nothing lost.

Each test measures how long the uninterrupted command takes in the same session and kills a
victim at random fractions of that (random.Random(SEED)), so the kill lands somewhere
different in the work each seed, not at one hand-picked line. Liveness waits have generous
deadlines; no test asserts how long anything took.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import babysit as bs
from babysit.cli.runs import damage
from babysit.train.checkpoint import load_checkpoint
from babysit.tune.store import slot_trials

pytestmark = pytest.mark.slow
SEED = 11
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def babysit(*args, cwd=None, env=None):
    return subprocess.Popen([sys.executable, "-m", "babysit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=cwd, env=env or ENV, start_new_session=True)  # fmt: skip


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def timed(*args, **kw):
    start = time.monotonic()
    code, out, err = finish(babysit(*args, **kw))
    return code, out, err, time.monotonic() - start


def kill_after(proc, seconds, group=True):
    """SIGKILL `proc` (its whole process group, or itself only) after `seconds`, unless it ended first; whether it was killed."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        pass
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return True


def wait_for(ready, proc):
    """Poll until `ready()` or the process ends."""
    while not ready() and proc.poll() is None:
        time.sleep(0.01)


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


# ---------------------------------------------------------------- /proc


def _stat(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children(pid):
    """The live child processes of `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        fields = _stat(entry) if entry.isdigit() else None
        if fields and int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def alive(pid):
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def still_running(pids, deadline_s):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# ---------------------------------------------------------------- train

TRAIN = ["train", "--data", "digits", "--model", "mlp", "--model.hidden=[32]", "--epochs", "3", "--train.batch_size=20",
         "--train.device=cpu", "--watch.probes=full", "--json"]  # fmt: skip


def test_train_killed_at_random_moments_then_resumed_equals_the_uninterrupted_run(tmp_path):
    env = {**ENV, "BABYSIT_RUNS_DIR": str(tmp_path)}
    code, out, err = finish(babysit(*TRAIN, "--name", "reference", env=env))
    assert code == 0, err
    reference = last_json(out)
    rng = random.Random(SEED)
    run_dir = tmp_path / "victim"
    # The first kill lands after the record began (events.jsonl has "started"), anywhere in training;
    # then the resumed run is itself killed at a random moment of what is left, and resumed again.
    seconds = sum(r["seconds"] for r in bs.load_run(tmp_path / "reference").metrics)  # the training itself
    victim = babysit(*TRAIN, "--name", "victim", env=env)
    wait_for(lambda: (run_dir / "events.jsonl").is_file(), victim)
    kills = [kill_after(victim, rng.uniform(0.05, 0.9) * seconds)]
    if kills[0]:
        record = bs.load_run(run_dir)
        assert record.status == "incomplete" and damage(run_dir) is None  # every record file still reads
        again = babysit("train", "--resume", str(run_dir), "--json", env=env)
        wait_for(lambda: "resumed" in (run_dir / "events.jsonl").read_text(), again)
        kills.append(kill_after(again, rng.uniform(0.0, 0.9) * seconds * (3 - len(record.metrics)) / 3))
    code, out, err = finish(babysit("train", "--resume", str(run_dir), "--json", env=env))
    if code == 2 and "already completed" in err:  # the last kill came after the end: nothing to resume
        out = json.dumps({**bs.load_run(run_dir).summary, "run_dir": str(run_dir)})
    else:
        assert code == 0, err
    assert kills[0], "the victim finished before it could be killed"
    resumed = last_json(out)
    for key in ("status", "test_loss", "test_accuracy", "best_val_accuracy", "best_epoch"):
        assert resumed[key] == reference[key], key
    a, b = bs.load_run(run_dir), bs.load_run(tmp_path / "reference")
    drop = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert drop(a.metrics) == drop(b.metrics) and a.probes == b.probes  # nothing lost, nothing duplicated
    for name in ("last.pt", "best.pt"):  # the final weights are the same to the bit
        wa, wb = (load_checkpoint(r.path / "checkpoints" / name)["model"] for r in (a, b))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---------------------------------------------------------------- tune --mode caviar

TRIALS = 6


def tune_command(tmp_path):
    return [
        "tune", "--data", "digits", "--model", "mlp", "--model.hidden=[32]", "--param", "train.lr=log_uniform(2e-3, 1e-2)",
        "--trials", str(TRIALS), "--epochs", "4", "--train.batch_size=10", "--mode", "caviar", "--workers", "2",
        "--storage", str(tmp_path / "journal.log"), "--study", "k", "--report", str(tmp_path / "report.html"), "--json",
    ]  # fmt: skip


def study_trials(tmp_path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))
    return optuna.load_study(study_name="k", storage=storage).get_trials(deepcopy=False)


@pytest.mark.parametrize("whom", ["parent", "group"])
def test_caviar_killed_at_a_random_moment_then_rerun_loses_and_duplicates_nothing(tmp_path, whom):
    rng = random.Random(f"{SEED}-{whom}")
    victim = babysit(*tune_command(tmp_path))
    journal = tmp_path / "journal.log"
    # Wait for the first finished trial (the workers are up and the study is written), then kill at random.
    while victim.poll() is None:
        if journal.is_file() and b'"state":1' in journal.read_bytes():
            break
        time.sleep(0.05)
    assert victim.poll() is None, "the search ended before it could be killed"
    workers = children(victim.pid)
    assert len(workers) >= 2  # the two workers (and multiprocessing's resource tracker)
    # A random moment, but while at least two trials are still to finish: on a fast or idle machine
    # the two workers can otherwise complete the whole study within the wait, and the kill (of a
    # parent writing its report) would test nothing.
    deadline = time.monotonic() + rng.uniform(0.0, 2.0)
    while time.monotonic() < deadline and journal.read_bytes().count(b'"state":1') < TRIALS - 2:
        time.sleep(0.02)
    assert victim.poll() is None, "the search ended before it could be killed"
    at_kill = sum(t.state == TrialState.COMPLETE for t in study_trials(tmp_path))
    if whom == "group":
        os.killpg(victim.pid, signal.SIGKILL)
    else:
        victim.send_signal(signal.SIGKILL)
    assert still_running(workers, deadline_s=60) == []  # killing the parent stops its workers: no orphans
    victim.communicate()
    before = {t.number: (t.value, t.params) for t in study_trials(tmp_path) if t.state == TrialState.COMPLETE}
    # The workers stopped with their parent instead of carrying on with the search alone (at most a
    # trial whose last write was already under way when the parent died completes after it).
    assert len(before) <= at_kill + 1 and len(before) < TRIALS, (at_kill, len(before))

    code, out, err = finish(babysit(*tune_command(tmp_path)))
    assert code == 0, err
    assert last_json(out)["trials"] == {"completed": TRIALS}
    after = study_trials(tmp_path)
    for number, kept in before.items():  # nothing completed is lost or changed
        assert after[number].state == TrialState.COMPLETE and (after[number].value, after[number].params) == kept
    slots = slot_trials(after)  # one complete trial per slot, none duplicated
    assert sorted(slots) == [(1, i) for i in range(TRIALS)] and all(t.state == TrialState.COMPLETE for t in slots.values())
    assert sum(t.state == TrialState.COMPLETE for t in after) == TRIALS


# ---------------------------------------------------------------- doctor

DOCTOR = ["doctor", "--data", "digits", "--model", "mlp", "--model.hidden=[32]", "--epochs", "2", "--train.device=cpu"]


def test_doctor_killed_at_a_random_moment_then_rerun_completes_and_leaves_nothing_corrupt(tmp_path):
    env = {**ENV, "BABYSIT_RUNS_DIR": str(tmp_path / "runs")}
    code, out, err, took = timed(*DOCTOR, env=env)
    assert code in (0, 1), err
    rng = random.Random(SEED)
    killed = kill_after(babysit(*DOCTOR, env=env), rng.uniform(0.1, 0.95) * took)
    code, out, err = finish(babysit(*DOCTOR, env=env))  # the same command again
    assert code in (0, 1), err
    assert Path(out.strip().splitlines()[-1]).read_text().startswith("<!doctype html>")
    assert killed, "the victim finished before it could be killed"
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) in (2, 3)  # the killed command may have died before it made its folder
    for folder in folders:
        problem = damage(folder)
        # Only a folder killed before its record began may lack config.json; no file is ever half-written.
        assert problem is None or problem.startswith("config.json is missing"), (folder, problem)
        if problem is None:
            bs.load_run(folder)  # every line reads back
        for name in ("check.json", "report.html"):
            if (folder / name).exists():
                text = (folder / name).read_text()
                assert json.loads(text) if name.endswith(".json") else text.rstrip().endswith("</html>")
    listed = subprocess.run([sys.executable, "-m", "babysit", "runs", "--json"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) >= 2
