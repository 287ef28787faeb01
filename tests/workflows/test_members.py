"""`auto`'s final stage as an ensemble: how many runs, how long, their averaged predictions, and the saved file."""

import math
from dataclasses import replace

import pytest
import torch

import babysit as bs
from babysit.build import load_data, run
from babysit.ensemble import Ensemble
from babysit.errors import DataError
from babysit.train.trainer import evaluate
from babysit.workflows.budget import FINAL_FACTOR, Cost, cpu_seconds
from babysit.workflows.members import MAX_MEMBERS, Member, ensemble_accuracy, first_share, member_count, save_ensemble, train_members


def test_one_run_unless_the_budget_buys_two_runs_of_the_length_every_final_run_extrapolates_to():
    h = 100
    assert member_count(10_000, 0) == 1  # nothing re-evaluated: the start trains with all of it, as before
    assert member_count(2 * FINAL_FACTOR * h - 1, h) == 1  # a split re-evaluation leaves FINAL_FACTOR x h: one run
    assert member_count(2 * FINAL_FACTOR * h, h) == 2
    assert member_count(10 * h, h) == 10 // FINAL_FACTOR  # k-fold's ten runs of h leave the final stage about ten horizons
    assert member_count(10**9, h) == MAX_MEMBERS  # each member costs a forward pass per test view


def test_every_member_trains_as_long_when_the_first_is_recorded_and_the_rest_bare():
    recorded, bare = Cost(per_epoch_s=0.03, fixed_s=0.2), Cost(per_epoch_s=0.025, fixed_s=0.1)
    for left, members in ((60.0, 3), (600.0, 5), (5.0, 2)):
        epochs = first_share(left, members, recorded, bare)
        assert recorded.of(epochs) + bare.of(epochs, members - 1) <= left < recorded.of(epochs + 1) + bare.of(epochs + 1, members - 1)


@pytest.fixture(scope="module")
def digits_runs():
    """Two short runs of a digits MLP on different seeds, and the data (with a fixed flip view to average over)."""
    cfg = bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp", "hidden": [32]}, "train": {"epochs": 3}})
    data = load_data(cfg.data)
    t0 = cpu_seconds()
    done = [run(replace(cfg, train=replace(cfg.train, seed=s)), progress=False, data=data) for s in (0, 1)]
    per_epoch = (cpu_seconds() - t0) / 6  # fixed costs included: an epoch priced high, so a plan made from it fits
    return cfg, data, done, per_epoch


def test_the_ensemble_scores_the_mean_of_its_members_probabilities_over_the_test_views(digits_runs):
    _, data, done, _ = digits_runs
    models = [d.model for d in done]
    mirrored = replace(data, test_views=(lambda x: x, lambda x: x.flip(-1)))
    accuracy, single = ensemble_accuracy(models, mirrored)
    with torch.no_grad():
        probs = torch.stack([torch.softmax(m.eval()(v(data.test.x)), 1) for m in models for v in mirrored.test_views]).mean(0)
    assert accuracy == pytest.approx((probs.argmax(1) == data.test.y).float().mean().item())
    assert single == evaluate(Ensemble(models), data.test.x, data.test.y)[1]
    assert ensemble_accuracy(models, data)[1] is None  # no views: nothing but the averaged number


def test_the_saved_ensemble_loads_back_to_the_same_predictions_and_refuses_another_file(digits_runs, tmp_path):
    cfg, data, done, _ = digits_runs
    members = [Member(s, d.result.epochs, d.result.status, d.result.test_accuracy, d.model) for s, d in zip((0, 1), done)]
    path = save_ensemble(tmp_path / "ensemble.pt", cfg, members)
    loaded = bs.load_ensemble(path)  # rebuilt from the saved config's data
    with torch.no_grad():
        assert torch.equal(loaded(data.test.x), Ensemble([d.model.eval() for d in done])(data.test.x))
    raw = torch.load(path, weights_only=True)  # plain tensors and values: safe to read
    assert [m["seed"] for m in raw["members"]] == [0, 1] and raw["config"]["model"]["hidden"] == [32]
    other = tmp_path / "other.pt"
    torch.save({"format": 1, "model": {}}, other)
    with pytest.raises(DataError, match="babysit-ensemble"):
        bs.load_ensemble(other)


def test_a_member_the_budget_cannot_train_as_long_as_its_ranking_is_not_trained_and_said(digits_runs):
    cfg, data, _, _ = digits_runs
    notes: list[str] = []
    cost = Cost(per_epoch_s=1.0, fixed_s=0.0)
    now = cpu_seconds()
    extra = train_members(cfg, {}, data, [5, 6], cost, end=now + 2.5, guard_end=math.inf, min_epochs=10, callbacks=[], notes=notes)
    assert extra == [] and notes == ["the budget left bought 1 epoch for ensemble member 2, fewer than the 10 that ranked its configuration: "
                                     "the first run is delivered alone"]  # fmt: skip


def test_members_train_on_their_own_seeds_for_the_length_their_share_buys(digits_runs):
    cfg, data, done, per_epoch = digits_runs
    notes: list[str] = []
    extra = train_members(cfg, {}, data, [7, 8], Cost(per_epoch, 0.0), end=cpu_seconds() + 16 * per_epoch, guard_end=math.inf, min_epochs=3,
                          callbacks=[], notes=notes)  # fmt: skip
    assert [m.seed for m in extra] == [7, 8] and all(m.status == "completed" and m.epochs >= 3 for m in extra), notes
    weights = [next(m.model.parameters()) for m in (*extra, done[0])]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])  # independent initialisations


def test_the_printed_summary_names_the_ensemble_and_why_it_was_trained(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from babysit.cli import auto as cli_auto
    from babysit.workflows.auto import AutoResult

    printed = io.StringIO()
    monkeypatch.setattr(cli_auto, "out", Console(file=printed, width=400))
    members = [{"seed": s, "epochs": e, "status": "completed", "test_accuracy": 0.85} for s, e in ((2, 1466), (5, 1517), (6, 1323))]
    plan = {"budget_s": 600.0, "search_share": 0.35, "trials": 15, "coarse_epochs": 146, "horizon_epochs": 705, "reevaluate_s": 190.0,
            "report_s": 7.5, "planned": {"search_s": 205.0, "final_epochs": 2893}, "final_epochs_trained": 1466,
            "ensemble": {"planned": 3, "members": members, "test_accuracy": 0.875, "horizon_epochs": 705, "saved": "ensemble.pt"}}  # fmt: skip
    cli_auto.print_auto(AutoResult("completed", 0.875, None, tmp_path / "best.toml", "", tmp_path / "report.html", tmp_path, {"final": 270.0}, plan))
    said = " ".join(printed.getvalue().split())  # the table's title wraps to its width
    assert "test accuracy 0.8750, an ensemble of 3 runs (ensemble.pt)" in said
    assert f"an ensemble of 3 runs of 1323-1517 epochs (the budget bought at least two final runs of {FINAL_FACTOR}x the 705 epochs" in said
