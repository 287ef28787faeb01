"""Every resource request is bounded before anything is allocated or spawned.

Worker processes, trials, layers and units, CSV columns and field sizes, lab options: an
absurd request is refused in one line (or, for caviar's workers, capped with a line saying
why) instead of a process bomb, a hang or an allocation of terabytes. Subprocess waits
have generous deadlines (a hang fails the test); no test asserts how long anything took.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import babysit as bs
from babysit.build import BYTES_PER_PARAMETER, model_from_config
from babysit.config import MAX_LAYERS
from babysit.errors import BabysitError, ConfigError
from babysit.tune.runner import WORKER_BYTES, cpu_cores, worker_count
from babysit.tune.search import MAX_TRIALS, TuneSettings

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
HANG_S = 300  # a command still running after this long is hung


def _user_tasks() -> int:
    """Processes and threads of this user: what RLIMIT_NPROC counts."""
    uid, count = os.getuid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue
    return count


def test_caviar_with_an_absurd_worker_count_under_a_process_limit_starts_no_more_than_the_trials_left(tmp_path: Path, processes) -> None:
    # A process limit a little above what this user runs now: a process bomb would hit it
    # (fork failing mid-spawn) instead of taking the machine down. (Root is exempt from the
    # limit, so the count of children below is what shows the cap.)
    limit = _user_tasks() + 200
    args = [
        sys.executable, "-m", "babysit", "tune", "--data", "spiral", "--model", "mlp", "--model.hidden=[8]", "--epochs", "1",
        "--train.device=cpu", "--trials", "2", "--mode", "caviar", "--workers", "10000", "-p", "train.lr=log_uniform(1e-3,1e-1)",
        "--storage", str(tmp_path / "journal.log"), "--study", "bomb", "--report", str(tmp_path / "report.html"), "--json",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit)))  # fmt: skip
    most = 0
    end = time.monotonic() + HANG_S
    while proc.poll() is None and time.monotonic() < end:
        most = max(most, len(processes.children(proc.pid)))
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "caviar: 10000 workers asked, 2 started (bounded by 2 trials left" in err, err
    assert most <= 3  # the two workers and multiprocessing's resource tracker
    assert '"completed": 2' in out.splitlines()[-1]


@FAST
@given(requested=st.integers(1, 10**9), left=st.integers(1, 10**6), memory=st.integers(0, 2**45), oversubscribe=st.booleans(), data=st.integers(0, 2**34))
def test_the_worker_count_never_exceeds_any_bound(requested: int, left: int, memory: int, oversubscribe: bool, data: int) -> None:
    n, note = worker_count(requested, left, oversubscribe=oversubscribe, data_bytes=data, memory=memory)
    assert 1 <= n <= requested and n <= left
    assert n == 1 or n * (WORKER_BYTES + data) <= memory
    assert oversubscribe or n <= cpu_cores()
    assert (note == "") == (n == requested) and "\n" not in note


def test_a_billion_trials_is_refused_before_any_planning(refused, tmp_path: Path) -> None:
    args = ["tune", "--data", "spiral", "--model", "mlp", "--trials", "1000000000", "-p", "train.lr=log_uniform(1e-3,1e-1)",
            "--storage", str(tmp_path / "journal.log"), "--report", str(tmp_path / "r.html")]  # fmt: skip
    refused(args, f"at most {MAX_TRIALS:,}", tmp_path)


@FAST
@given(trials=st.integers(-(10**12), 10**12), strategy=st.sampled_from(["random", "grid", "tpe", "coarse_to_fine"]), stages=st.integers(1, 5))
def test_any_trial_budget_is_accepted_within_the_bound_or_refused_in_one_line(trials: int, strategy: str, stages: int) -> None:
    try:
        TuneSettings(strategy=strategy, trials=trials, stages=stages)
    except ConfigError as e:
        assert "\n" not in str(e) and (trials < 1 or trials > MAX_TRIALS or trials < stages)
    else:
        assert 1 <= trials <= MAX_TRIALS


def test_twenty_thousand_hidden_layers_are_refused_with_the_numbers(refused, tmp_path: Path) -> None:
    hidden = "[" + ",".join(["8"] * 20_000) + "]"
    line = refused(["train", "--data", "spiral", "--model", "mlp", f"--model.hidden={hidden}", "--runs-dir", str(tmp_path / "runs")], "20,000 hidden layers", tmp_path)
    assert f"at most {MAX_LAYERS:,}" in line


def test_a_billion_units_are_refused_with_the_memory_they_need(refused, tmp_path: Path) -> None:
    line = refused(["train", "--data", "spiral", "--model", "mlp", "--model.hidden=[1000000000]", "--runs-dir", str(tmp_path / "runs")], "parameters", tmp_path)
    assert "GiB" in line and "memory is available" in line


# Resource requests a config can make: layer lists (long, wide), convnet stages and depth.
WIDTHS = st.integers(1, 10**10)
REQUESTS = st.one_of(
    st.builds(lambda h: {"name": "mlp", "hidden": h}, st.lists(WIDTHS, min_size=1, max_size=3) | st.lists(st.integers(1, 4), min_size=900, max_size=1100)),
    st.builds(lambda c, d: {"name": "convnet", "channels": c, "depth": d}, st.lists(WIDTHS, min_size=1, max_size=3), st.integers(1, 2000)),
)
MEMORY = 64 * 2**20  # the limit these requests are judged against: 64 MiB


@settings(max_examples=25, deadline=None)
@given(model=REQUESTS)
def test_any_model_request_builds_within_the_memory_limit_or_is_refused_in_one_line(model: dict, digits_for_bounds) -> None:
    try:
        cfg = bs.build_config({"data": {"name": "digits"}, "model": model})
        net = model_from_config(cfg.model, digits_for_bounds, memory=MEMORY)
    except BabysitError as e:
        assert "\n" not in str(e)
        return
    parameters = sum(p.numel() for p in net.parameters())
    assert parameters * BYTES_PER_PARAMETER <= MEMORY


@pytest.fixture(scope="module")
def digits_for_bounds() -> bs.Dataset:
    return bs.prepare(bs.load_dataset("digits"))


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


def test_a_csv_of_a_million_columns_is_refused_on_its_first_line(refused, tmp_path: Path) -> None:
    wide = _csv(tmp_path / "wide.csv", [f"c{i}" for i in range(10**6)] + ["label"], [["1"] * 10**6 + ["0"]])
    refused(["train", "--data", "arrays", f"--data.path={wide}", "--model", "mlp", "--runs-dir", str(tmp_path / "runs")], "line 1 has 1,000,001 fields", tmp_path)


def test_a_huge_csv_field_is_named_as_the_field_size_limit_not_as_an_encoding(refused, tmp_path: Path) -> None:
    big = _csv(tmp_path / "field.csv", ["a", "label"], [["1" * 400_000, "0"], ["2", "1"]])
    line = refused(["train", "--data", "arrays", f"--data.path={big}", "--model", "mlp", "--runs-dir", str(tmp_path / "runs")], "line 2 has a field longer than the CSV field-size limit", tmp_path)
    assert "UTF-8" not in line


@pytest.mark.parametrize(
    "option, phrase",
    [("--units -5", "--units of 'init' must be between 1 and 5,000, got -5"), ("--units 1000000000", "got 1,000,000,000"),
     ("--layers 0", "--layers"), ("--samples 1e300", "--samples"), ("--units 5000 --samples 100000", "GiB of memory")],
)  # fmt: skip
def test_lab_options_are_bounded_before_the_experiment_runs(refused, tmp_path: Path, option: str, phrase: str) -> None:
    refused(["lab", "init", *option.split(), "--out", str(tmp_path / "lab")], phrase, tmp_path)


@FAST
@given(units=st.integers(-(10**12), 10**12), layers=st.integers(-5, 10**6))
def test_any_lab_size_runs_within_memory_or_is_refused_in_one_line(units: int, layers: int) -> None:
    from babysit.lab.result import check_limits, experiment_options
    from babysit.lab import EXPERIMENTS

    options = {**experiment_options("init"), "units": units, "layers": layers}
    try:
        check_limits("init", EXPERIMENTS.get("init"), options)
    except ConfigError as e:
        assert "\n" not in str(e)
    else:
        assert 1 <= units <= 5000 and 1 <= layers <= 50

