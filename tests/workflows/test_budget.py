"""`auto`'s budget plan from measured costs: a run's fixed cost is planned, a cheap epoch buys no flood of trials."""

import pytest

from babysit.workflows.budget import FINAL_FACTOR, MIN_TRIALS, STAGE_WORK, Cost, EpochMeter, plan_budget, split_rest


def _meter(*runs: list[float]) -> EpochMeter:
    meter = EpochMeter()
    meter.runs = [list(r) for r in runs]
    return meter


def test_a_stage_splits_into_a_fixed_cost_per_run_and_an_epoch_cost_from_its_later_epochs():
    # Two runs: start, then epoch ends. Run 1's first epochs are dear (probes at the first steps), its later ones 1 s.
    meter = _meter([0.0, 3.0, 5.0, 6.0, 7.0], [10.0, 12.0, 13.0])
    cost = meter.cost(total_s=14.0)
    assert cost.per_epoch_s == pytest.approx(1.0)  # the later half of each run's epoch-to-epoch intervals
    assert cost.fixed_s == pytest.approx((14.0 - 6 * 1.0) / 2)  # the stage's seconds minus its epochs, per run
    assert 2 * cost.fixed_s + meter.epochs * cost.per_epoch_s == pytest.approx(14.0)  # the model reproduces what was measured
    assert _meter().cost(1.0) is None


def test_runs_of_one_epoch_only_plan_with_their_first_epoch():
    cost = _meter([0.0, 2.0], [5.0, 7.0]).cost(total_s=5.0)
    assert cost.per_epoch_s == pytest.approx(2.0) and cost.fixed_s == pytest.approx(0.5)


def test_an_epoch_measured_on_folds_is_priced_for_the_final_runs_samples():
    # 5-fold runs over MNIST-1D-small's 1,600 samples of train+val train 1,280 an epoch; the final run trains the 1,440 of the train split.
    on_folds = Cost(per_epoch_s=0.032, fixed_s=0.4)
    final = on_folds.for_samples(measured_on=1280, used_on=1440)
    assert final.per_epoch_s == pytest.approx(0.036) and final.fixed_s == 0.4
    assert final.epochs_for(36.4) == 1000 < on_folds.epochs_for(36.4)  # priced on the folds, it planned 12% past the budget


def test_the_rest_is_split_so_reevaluation_and_the_final_run_fill_it():
    bare, recorded = Cost(per_epoch_s=0.1, fixed_s=0.5), Cost(per_epoch_s=0.3, fixed_s=1.0)  # a recorded epoch: 3x a bare one (a table's probes)
    h, final = split_rest(100.0, bare, recorded, runs=4)
    assert final == FINAL_FACTOR * h and h > 0
    assert bare.of(h, runs=4) + recorded.of(final) <= 100.0 < bare.of(h + 1, runs=4) + recorded.of(FINAL_FACTOR * (h + 1))
    # When no re-evaluation epoch fits, the final run gets everything.
    assert split_rest(3.5, bare, recorded, runs=4) == (0, recorded.epochs_for(3.5)) == (0, 8)


@pytest.mark.parametrize("runs", [4, 10, 15])
def test_the_reevaluation_never_costs_more_than_the_final_run(runs):
    # Bare and recorded epochs alike (a convnet's probes cost little): 2 configurations x 5 folds at half the final run's
    # length would spend five sixths of the rest choosing and one sixth training the model the user gets.
    bare, recorded = Cost(per_epoch_s=0.13, fixed_s=0.5), Cost(per_epoch_s=0.13, fixed_s=0.6)
    h, final = split_rest(100.0, bare, recorded, runs=runs)
    assert h >= 1 and final >= FINAL_FACTOR * h
    assert bare.of(h, runs) <= recorded.of(final) and bare.of(h, runs) + recorded.of(final) <= 100.0 < bare.of(h, runs) + recorded.of(final + 1)
    assert bare.of(h + 1, runs) > recorded.of(recorded.epochs_for(100.0 - bare.of(h + 1, runs)))  # the longest re-evaluation that does


def test_a_cheap_epoch_with_a_dear_fixed_cost_buys_few_trials_not_hundreds():
    # The reverted plan: 335 one-epoch trials from a 0.3 s look, their fixed costs unplanned, 14.8 of 15 s spent searching.
    bare, recorded = Cost(per_epoch_s=0.004, fixed_s=0.2), Cost(per_epoch_s=0.02, fixed_s=0.3)
    plan = plan_budget(14.0, bare, recorded, runs=4)
    assert MIN_TRIALS <= plan.trials and plan.trials * (bare.fixed_s + STAGE_WORK * plan.coarse_epochs * bare.per_epoch_s) <= plan.search_s
    assert plan.search_s + plan.reevaluate_s + plan.final_s <= 14.0 and plan.final_epochs == FINAL_FACTOR * plan.horizon > 0


def test_a_budget_that_buys_no_search_gives_the_final_run_everything():
    bare, recorded = Cost(per_epoch_s=1.0, fixed_s=0.5), Cost(per_epoch_s=1.2, fixed_s=0.6)
    plan = plan_budget(10.0, bare, recorded, runs=4)  # the search's 3.5 s buy one trial, fewer than MIN_TRIALS
    assert (plan.trials, plan.horizon, plan.search_s, plan.reevaluate_s) == (0, 0, 0.0, 0.0)
    assert plan.final_epochs == recorded.epochs_for(10.0) == 7 and plan.final_s <= 10.0




@pytest.mark.parametrize("epoch_s, expected", [(1.0, 50), (0.25, 200)])
def test_a_run_fitted_to_the_budget_re_plans_from_its_own_epochs_and_still_completes(monkeypatch, epoch_s, expected):
    import torch

    import babysit as bs
    import babysit.workflows.budget as budget
    from babysit.workflows.budget import FitToBudget

    clock = [0.0]
    monkeypatch.setattr(budget, "cpu_seconds", lambda: clock[0])

    class Tick:  # every epoch costs epoch_s on the budget's clock
        def on_epoch_end(self, state):
            clock[0] += epoch_s

    fitted = FitToBudget(end=50.0)
    data = bs.Dataset.from_arrays(torch.randn(64, 3), torch.arange(64) % 2)
    result = bs.fit(torch.nn.Linear(3, 2), data, bs.Recipe(epochs=100, schedule="cosine"), callbacks=[Tick(), fitted], progress=False)
    # Planned at 100 epochs; its own epochs say `expected` end at the budget's end: it trains exactly those, to its schedule's end.
    assert result.status == "completed" and result.epochs == expected and clock[0] <= 50.0
    assert fitted.changes[0][:3] == (5, 100, expected) and fitted.changes[0][3] == pytest.approx(epoch_s)
    assert result.history.records[-1]["lr"] < 1e-6



def _fitted_run(monkeypatch, epoch_cost):
    """A 120-epoch cosine run fitted to end at 120 CPU-s, whose epochs cost epoch_cost(clock) on the budget's clock."""
    import torch

    import babysit as bs
    import babysit.workflows.budget as budget
    from babysit.workflows.budget import FitToBudget

    clock = [0.0]
    monkeypatch.setattr(budget, "cpu_seconds", lambda: clock[0])

    class Tick:
        def on_epoch_end(self, state):
            clock[0] += epoch_cost(clock[0])

    fitted = FitToBudget(end=120.0)
    data = bs.Dataset.from_arrays(torch.randn(64, 3), torch.arange(64) % 2)
    result = bs.fit(torch.nn.Linear(3, 2), data, bs.Recipe(epochs=120, schedule="cosine"), callbacks=[Tick(), fitted], progress=False)
    return result, fitted, clock[0]


@pytest.mark.parametrize("seed", range(5))
def test_a_run_fitted_to_the_budget_does_not_re_plan_for_the_noise_of_its_epochs(monkeypatch, seed):
    import random

    draw = random.Random(seed)
    # Epochs of 1 CPU-s on average, each off by up to 30% (a loaded machine): the plan of 120 was right.
    result, fitted, spent = _fitted_run(monkeypatch, lambda now: draw.uniform(0.7, 1.3))
    assert result.status == "completed" and len(fitted.changes) <= 2  # from the epochs since its last look: 9-18 kinks
    assert 110 <= result.epochs <= 130 and 0.95 * 120 <= spent <= 1.03 * 120
    assert result.history.records[-1]["lr"] < 1e-6  # the schedule still ended


def test_a_run_fitted_to_the_budget_follows_a_real_rise_in_its_epochs_cost(monkeypatch):
    import random

    draw = random.Random(0)
    # Half-way through, the machine gets busier: epochs cost 40% more. The run shortens and still ends its schedule at the budget.
    result, fitted, spent = _fitted_run(monkeypatch, lambda now: draw.uniform(0.9, 1.1) * (1.0 if now < 60 else 1.4))
    assert result.status == "completed" and result.epochs < 110 and fitted.changes[-1][2] == result.epochs
    assert spent <= 1.03 * 120 and result.history.records[-1]["lr"] < 1e-6


def _calibration_run(monkeypatch, epoch_cost, until, precision):
    """A calibration run (as auto's: at least 3 epochs, at most until `until` on the budget's clock) whose epochs cost epoch_cost()."""
    import torch

    import babysit as bs
    import babysit.workflows.budget as budget
    from babysit.workflows.budget import Enough, EpochMeter

    clock = [0.0]
    monkeypatch.setattr(budget, "cpu_seconds", lambda: clock[0])

    class Tick:
        def on_epoch_end(self, state):
            clock[0] += epoch_cost()

    meter = EpochMeter()
    data = bs.Dataset.from_arrays(torch.randn(16, 3), torch.arange(16) % 2)
    result = bs.fit(torch.nn.Linear(3, 2), data, bs.Recipe(epochs=1000, batch_size=16), callbacks=[Tick(), Enough(3, until, precision), meter], progress=False)
    return result, meter.cost(clock[0]), clock[0]


@pytest.mark.parametrize("seed", range(5))
def test_calibration_stops_once_a_noisy_millisecond_epoch_is_known_not_at_its_share(monkeypatch, seed):
    import random

    from babysit.workflows.auto import CALIBRATE_PRECISION

    draw = random.Random(seed)
    # A table's epoch: 4 ms, varying by a quarter (measured on the wine table: 28%); the share is 3 CPU-s (2% of 2.5 minutes).
    result, cost, spent = _calibration_run(monkeypatch, lambda: draw.gauss(0.004, 0.0011), until=3.0, precision=CALIBRATE_PRECISION)
    assert result.status == "stopped" and spent < 1.0 and result.epochs < 250  # the share alone measured 750 epochs
    assert cost.per_epoch_s == pytest.approx(0.004, rel=CALIBRATE_PRECISION)


def test_calibration_of_a_steady_epoch_takes_its_few_epochs_and_of_a_wild_one_its_whole_share(monkeypatch):
    import random

    steady, _, _ = _calibration_run(monkeypatch, lambda: 1.0, until=30.0, precision=0.07)
    assert steady.epochs == 4  # three epochs after the warm-up, the later two of them alike
    draw = random.Random(0)
    wild, _, spent = _calibration_run(monkeypatch, lambda: draw.expovariate(1.0), until=30.0, precision=0.07)
    assert wild.status == "stopped" and 30.0 <= spent < 36.0  # an epoch varying by 100% is not known to 7% in 30 of them


def _metered_runs(monkeypatch, stops: list[int | None]) -> tuple[EpochMeter, float]:
    """Runs of 3 epochs x 4 batches, each batch one CPU-second on a fake clock; run i stops itself after stops[i] steps (None: never)."""
    import torch

    import babysit as bs
    import babysit.workflows.budget as budget
    from babysit.status import DIVERGED

    clock = [0.0]
    monkeypatch.setattr(budget, "cpu_seconds", lambda: clock[0])

    class Batches:
        def __init__(self, stop_at: int | None) -> None:
            self.stop_at = stop_at

        def on_batch_end(self, state):
            clock[0] += 1.0
            if state.step == self.stop_at:  # as a divergence guard or a stage's budget guard stops a run: between two batches
                state.request_stop(DIVERGED, "loss exploded")

    meter = EpochMeter()
    x, y = torch.randn(64, 3), torch.arange(64) % 2
    data = bs.Dataset.from_arrays(x, y, x_val=x[:8], y_val=y[:8], x_test=x[:8], y_test=y[:8])
    for stop_at in stops:
        bs.fit(torch.nn.Linear(3, 2), data, bs.Recipe(epochs=3, batch_size=16), callbacks=[Batches(stop_at), meter], progress=False)
    return meter, clock[0]


def test_an_epoch_a_stop_cut_short_does_not_pass_for_a_cheap_epoch(monkeypatch):
    # A whole run, then a fast trial that diverged one batch into its second epoch: fit still ends that epoch, after 1 s, not 4.
    meter, spent = _metered_runs(monkeypatch, [None, 5])
    cost = meter.cost(spent)
    assert cost.per_epoch_s == pytest.approx(4.0)  # counting the cut epoch as one gave (4 + 1) / 2 = 2.5
    assert meter.epochs == pytest.approx(3 + 1 + 0.25)  # the cut epoch counts as the quarter of one it trained
    assert cost.fixed_s == pytest.approx(0.0)  # so the stage's 17 s are all epochs: no cost is left over as fixed
    assert meter.cost(spent + 4.0).fixed_s == pytest.approx(2.0)  # 4 s more of the stage: 2 s of fixed cost per run


def test_runs_cut_inside_their_first_epoch_price_an_epoch_by_the_share_they_trained(monkeypatch):
    meter, spent = _metered_runs(monkeypatch, [2])  # the budget spent half-way through the only epoch
    assert meter.cost(spent) == Cost(per_epoch_s=4.0, fixed_s=0.0)
