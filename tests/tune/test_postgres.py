"""Several machines on one study through PostgreSQL: a real local server, started by the test on a free loopback port.

Skipped, with the reason, where the server binaries or the driver are missing
(`.ci/run` installs them when it can).
"""

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

import optuna
import pytest
from optuna.trial import TrialState

from babysit.tune.store import DUPLICATE_KEY, WORKER_KEY, _redact, slot_trials

TRIALS = 12


def _binary(name):
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql to run this test")
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver is missing; pip install psycopg2-binary")
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as an unprivileged user
        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None or not shutil.which("runuser"):
            pytest.skip("running as root without a 'postgres' user or runuser to start PostgreSQL")
        prefix = ["runuser", "-u", user, "--"]
    home = tempfile.mkdtemp(prefix="babysit-pg-")
    data = os.path.join(home, "data")
    if prefix:
        os.chown(home, pwd.getpwnam(prefix[2]).pw_uid, -1)
    port = _free_port()
    run = lambda *cmd: subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)  # noqa: E731
    made = run(initdb, "-D", data, "-U", "babysit", "--auth=trust", "-E", "UTF8", "--no-sync")
    if made.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"initdb failed: {made.stderr.strip()[:200]}")
    opts = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = run(pg_ctl, "-D", data, "-o", opts, "-l", os.path.join(home, "log"), "-w", "-t", "60", "start")
    if started.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {started.stderr.strip()[:200]}")
    try:
        yield f"postgresql+psycopg2://babysit@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


def _has_user(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def command(url, study):
    return [
        sys.executable, "-m", "babysit", "tune", "--data", "digits", "--model", "mlp", "--optimizer", "momentum",
        "--model.hidden=[32]", "--param", "train.lr=log_uniform(1e-2, 0.3)", "--trials", str(TRIALS), "--epochs", "2",
        "--storage", url, "--study", study, "--json",
    ]  # fmt: skip


def test_two_machines_share_one_study_through_postgresql(postgres_url, tmp_path):
    # Two `babysit tune` commands started at once against one URL, as on two machines.
    procs = [
        subprocess.Popen(command(postgres_url, "shared") + ["--report", str(tmp_path / f"r{i}.html")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    slots = slot_trials(trials)
    assert sorted(slots) == [(1, i) for i in range(TRIALS)]  # every slot once: nothing lost
    assert all(t.state == TrialState.COMPLETE for t in slots.values())
    extra = [t for t in trials if t.number not in {s.number for s in slots.values()}]
    assert all(t.state == TrialState.FAIL and DUPLICATE_KEY in t.system_attrs and "config" not in t.user_attrs for t in extra)
    assert len({t.system_attrs[WORKER_KEY]["pid"] for t in slots.values()}) == 2  # both "machines" trained trials
    # Either command then reports the same, finished study.
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert all(s["trials"] == {"completed": TRIALS} for s in summaries)


def test_an_unreachable_server_is_one_clear_line(tmp_path):
    url = f"postgresql+psycopg2://babysit:secret@127.0.0.1:{_free_port()}/postgres"
    out = subprocess.run(command(url, "nowhere"), capture_output=True, text=True, timeout=120)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "cannot open storage postgresql+psycopg2://babysit:***@127.0.0.1" in lines[0] and "secret" not in out.stderr


def test_passwords_never_appear_in_reports():
    assert _redact("postgresql://me:pa:ss@db.example:5432/x") == "postgresql://me:***@db.example:5432/x"
    assert _redact("sqlite:///runs/x.db") == "sqlite:///runs/x.db"
