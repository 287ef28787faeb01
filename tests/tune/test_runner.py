"""Searches that really train (digits, one epoch, tiny MLPs): divergence, resume, stale and duplicate trials, caviar."""

import socket
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

import babysit as bs
from babysit.errors import ConfigError
from babysit.tune.runner import Planner, Search, work
from babysit.tune.space import parse_space
from babysit.tune.store import DUPLICATE_KEY, STALE_KEY, WORKER_KEY, claim, enqueue, is_stale, slot_of, slot_trials

BASE = {"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [16]}, "train": {"optimizer": "momentum"}}


def make_search(tmp_path, space, **settings):
    return Search(bs.build_config(BASE), parse_space(space), bs.tune.TuneSettings(**settings), root=tmp_path)


def test_learning_rates_up_to_10_are_reported_diverged_within_a_few_steps_and_the_search_completes(tmp_path, digits):
    result = bs.search(BASE, {"train.lr": "log_uniform(1e-3, 10)"}, bs.tune.TuneSettings(trials=12, epochs=1, seed=2), root=tmp_path, progress=False, data=digits)
    assert result.finished and len(result.trials) == 12
    high = [t for t in result.trials if t.values["train.lr"] >= 3]
    assert len(high) >= 2 and max(t.values["train.lr"] for t in high) > 5
    for t in high:
        assert t.status == "diverged", t
        assert t.diverged_at is not None and t.diverged_at <= 5  # the 3x-initial-loss rule fires within a few steps
        assert "initial loss" in t.reason or "NaN" in t.reason or "inf" in t.reason
    low = [t for t in result.trials if t.values["train.lr"] <= 0.3]
    assert low and all(t.status == "completed" for t in low)
    assert result.best.score > 0.5 and result.best.values["train.lr"] < 3
    # Optuna sees the diverged trials as pruned, so its own tools (dashboard, pruners) treat them alike.
    study = Search(bs.build_config(BASE), parse_space({"train.lr": "log_uniform(1e-3, 10)"}), bs.tune.TuneSettings(trials=12, epochs=1, seed=2), root=tmp_path).open().study
    assert sum(t.state == TrialState.PRUNED for t in study.trials) == sum(t.status == "diverged" for t in result.trials)


def test_rerunning_a_finished_search_trains_nothing_and_a_changed_search_is_refused(tmp_path, digits):
    space = {"train.lr": "log_uniform(1e-2, 0.3)", "model.hidden": "int_uniform(4, 16, log=true)"}
    settings = bs.tune.TuneSettings(strategy="coarse_to_fine", trials=6, stages=2, epochs=1)
    first = bs.search(BASE, space, settings, root=tmp_path, progress=False, data=digits)
    search = make_search(tmp_path, space, strategy="coarse_to_fine", trials=6, stages=2, epochs=1)
    assert search.study == first.search.study  # the same command finds the same study
    assert work(search, digits) == 0
    again = bs.search(BASE, space, settings, root=tmp_path, progress=False, data=digits)
    assert [(t.number, t.score) for t in again.trials] == [(t.number, t.score) for t in first.trials]
    changed = bs.tune.TuneSettings(strategy="coarse_to_fine", trials=6, stages=2, epochs=1, seed=1)
    with pytest.raises(ConfigError, match="was started with a different search .*settings"):
        bs.search(BASE, space, changed, study=first.search.study, root=tmp_path, progress=False, data=digits)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_trial_left_running_by_a_dead_worker_is_failed_and_its_slot_trained_again(tmp_path, digits):
    search = make_search(tmp_path, {"train.lr": "log_uniform(1e-2, 0.3)"}, trials=3, epochs=1)
    handle = search.open()
    assert Planner(search).advance(handle) == "enqueued"
    trial = claim(handle)
    dead = {"host": socket.gethostname(), "pid": _dead_pid()}
    handle.storage.set_trial_system_attr(handle.trial_id(trial.number), WORKER_KEY, dead)
    assert work(search, digits) == 3
    trials = handle.trials()
    stale = trials[trial.number]
    assert stale.state == TrialState.FAIL and STALE_KEY in stale.system_attrs
    slots = slot_trials(trials)
    assert sorted(slots) == [(1, 0), (1, 1), (1, 2)] and all(t.state == TrialState.COMPLETE for t in slots.values())
    assert slots[slot_of(stale)].number > stale.number  # re-queued as a new trial


def test_staleness_rule():
    here = socket.gethostname()
    assert is_stale({"host": here, "pid": _dead_pid()}, time.time(), time.time(), here)
    assert not is_stale({"host": here, "pid": subprocess.os.getpid()}, time.time(), time.time(), here)
    # On another machine only the heartbeat tells: stale after STALE_AFTER_S without one.
    assert not is_stale({"host": "elsewhere", "pid": 1}, time.time() - 60, time.time(), here)
    assert is_stale({"host": "elsewhere", "pid": 1}, time.time() - 1000, time.time(), here)


def test_a_slot_enqueued_twice_is_trained_once(tmp_path, digits):
    search = make_search(tmp_path, {"train.lr": "log_uniform(1e-2, 0.3)"}, trials=2, epochs=1)
    handle = search.open()
    Planner(search).advance(handle)
    enqueue(handle, 1, 0, {"log10(train.lr)": -1.5}, 1)  # what a racing second machine would add
    assert work(search, digits) == 2
    trials = handle.trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2
    (dup,) = [t for t in trials if DUPLICATE_KEY in t.system_attrs]
    assert dup.state == TrialState.FAIL and dup.system_attrs[DUPLICATE_KEY] == 0 and "config" not in dup.user_attrs


def test_two_caviar_workers_on_one_local_store_lose_and_duplicate_no_trial_over_50(tmp_path, digits):
    space = {"train.lr": "log_uniform(1e-2, 0.3)", "model.hidden": "int_uniform(4, 16, log=true)"}
    settings = bs.tune.TuneSettings(trials=50, epochs=1)
    result = bs.search(BASE, space, settings, mode="caviar", workers=2, root=tmp_path, progress=False, data=digits)
    assert result.finished
    trials = make_search(tmp_path, space, trials=50, epochs=1).open().trials()
    assert len(trials) == 50 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(slot_of(t) for t in trials) == [(1, i) for i in range(50)]  # every slot exactly once
    plan = Planner(make_search(tmp_path, space, trials=50, epochs=1)).plan(1, trials)
    for t in trials:  # each trial trained its slot's planned values
        planned = plan.configs[t.user_attrs["slot"]]
        assert t.user_attrs["config"]["model.hidden"] == planned["model.hidden"]
        assert t.user_attrs["config"]["train.lr"] == pytest.approx(planned["train.lr"], rel=1e-12)
    assert len({t.system_attrs[WORKER_KEY]["pid"] for t in trials}) == 2  # both processes did work


def test_median_pruning_stops_trials_behind_the_others(tmp_path, digits):
    settings = bs.tune.TuneSettings(trials=12, epochs=3, prune="median")
    result = bs.search(BASE, {"train.lr": "log_uniform(1e-5, 0.3)"}, settings, root=tmp_path, progress=False, data=digits)
    pruned = [t for t in result.trials if t.status == "pruned"]
    assert result.finished and pruned
    for t in pruned:
        assert t.reason.startswith("pruned at epoch") and len(t.history) < 3
    # What gets pruned is the slow end of the range: pruned trials have smaller learning rates than the best.
    assert max(t.values["train.lr"] for t in pruned) < result.best.values["train.lr"]


def test_any_optuna_rdb_url_is_a_store_too(tmp_path, digits):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = bs.search(BASE, {"train.lr": "log_uniform(1e-2, 0.3)"}, bs.tune.TuneSettings(trials=3, epochs=1), storage=url, study="sql", progress=False, data=digits)
    assert result.finished and result.where == url and [t.status for t in result.trials] == ["completed"] * 3
    assert len(optuna.load_study(study_name="sql", storage=url).trials) == 3


def test_a_staged_search_with_every_kind_of_parameter_runs_through_optuna(tmp_path, digits):
    # Stage 2 narrows the choice; Optuna must see the same CategoricalDistribution in every stage
    # (a changed list under the same name used to crash: "does not support dynamic value space").
    space = {
        "train.lr": "log_uniform(1e-2, 0.3)",
        "train.momentum": "one_minus_log(0.5, 0.95)",
        "model.dropout": "uniform(0, 0.3)",
        "model.hidden": "int_uniform(4, 16, log=true)",
        "model.activation": "choice([relu, tanh, elu, sigmoid])",
    }
    base = {**BASE, "train": {"optimizer": "momentum", "schedule": "cosine"}}
    settings = bs.tune.TuneSettings(strategy="coarse_to_fine", trials=12, stages=2, epochs=2, epoch_growth=2.0, top_k=1)
    result = bs.search(base, space, settings, root=tmp_path, progress=False, data=digits)
    first, second = ([t for t in result.trials if t.stage == s] for s in (1, 2))
    assert result.finished and len(result.trials) == 12 and first and second
    best1 = max((t for t in first if t.score is not None), key=lambda t: t.score)
    assert {t.values["model.activation"] for t in second} == {best1.values["model.activation"]}  # narrowed to the top-1's
    study = result.search.open().study
    dists = {str(t.distributions["model.activation"]) for t in study.trials if "model.activation" in t.distributions}
    assert len(dists) == 1
    # The per-batch cosine follows each stage's length: longer stage-2 trials still end at lr 0.
    assert min(len(t.history) for t in second) > max(len(t.history) for t in first)
    assert all(t.history[-1]["lr"] < 1e-12 for t in first + second if t.status == "completed")


def test_caviar_workers_train_on_augmented_data(tmp_path, digits):
    # The Dataset is pickled into each spawned worker: its augmentation and test views must survive that.
    from babysit.data.augment import with_augmentation

    data = with_augmentation(digits, ["flip", "crop"], padding=1)
    cfg = {"data": {"name": "digits"}, "model": {"name": "convnet", "channels": [4]}}
    result = bs.search(cfg, {"train.lr": "log_uniform(1e-3, 1e-2)"}, bs.tune.TuneSettings(trials=4, epochs=1, seed=0), mode="caviar", workers=2,
                       root=tmp_path, progress=False, data=data)  # fmt: skip
    assert result.finished and len(result.trials) == 4 and all(t.score is not None for t in result.trials)
