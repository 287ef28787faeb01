"""Ranking on the validation split, or by k-fold cross-validation when the split's standard error is too large."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
import torch

from babysit.workflows.ranking import FOLDS, RESOLUTION, folds, ranking, samples_needed, standard_error


def _table(tmp_path, loader):
    """A scikit-learn table loaded as `--data FILE.npz` loads it: standardised, split 0.9/0.1 and a test set."""
    import numpy as np

    import babysit as bs
    from babysit.build import load_data

    table = loader()
    path = tmp_path / "table.npz"
    np.savez(path, x=table.data.astype("float32"), y=table.target)
    return load_data(bs.build_config({"data": {"name": "arrays", "path": str(path)}}).data)


def test_the_standard_error_is_the_binomial_one_with_two_successes_and_two_failures_added():
    q = (0.96 * 45 + 2) / 49
    assert standard_error(0.96, 45) == pytest.approx(math.sqrt(q * (1 - q) / 49)) == pytest.approx(0.0382, abs=1e-4)
    # On large n it is the plain binomial one; on 45 of 45 right it is not 0.
    assert standard_error(0.97, 100_000) == pytest.approx(math.sqrt(0.97 * 0.03 / 100_000), rel=1e-3)
    assert standard_error(1.0, 45) == pytest.approx(0.0283, abs=1e-4)
    needed = samples_needed(0.96)
    assert needed == 420 and standard_error(0.96, needed) <= RESOLUTION < standard_error(0.96, needed - 1)


def test_a_small_table_is_ranked_by_stratified_kfold_over_train_and_val(tmp_path):
    from sklearn.datasets import load_breast_cancer

    data = _table(tmp_path, load_breast_cancer)
    rank = ranking([0.96, 0.94], data)  # about what the network reaches on breast cancer
    assert (rank.method, rank.n, rank.folds, rank.pooled) == ("kfold", 45, FOLDS, 456) and rank.se == pytest.approx(0.0382, abs=1e-4)
    assert "45 samples" in rank.describe() and "3.8%" in rank.describe() and "5-fold" in rank.describe()
    made = folds(data, rank.folds, seed=0)
    # Every train+val sample is in exactly one validation fold; the test split is left alone.
    val = torch.cat([f.val.x for f in made])
    pooled = torch.cat([data.train.x, data.val.x])
    assert sorted(map(tuple, val.tolist())) == sorted(map(tuple, pooled.tolist()))
    assert all(len(f.train) + len(f.val) == 456 and f.test is data.test for f in made)
    # Stratified: each fold's class balance is the pool's within one sample.
    share = torch.cat([data.train.y, data.val.y]).float().mean()
    assert all(abs(f.val.y.float().mean() - share) <= 1 / len(f.val) + 1e-6 for f in made)


def test_mnist1d_sized_validation_ranks_on_the_split_or_skips_configurations_within_its_noise(mnist1d):
    # 400 validation samples at the convnet's accuracy: a standard error under one point, so no k-fold.
    rank = ranking([0.975, 0.955], mnist1d)
    assert rank.method == "split" and rank.n == 400 and rank.se < RESOLUTION and rank.folds == 0
    assert "ranked on the validation split" in rank.describe()
    # Two points apart is more than sqrt(2) x SE (1.2 points); half a point apart is not: re-evaluation is skipped.
    close = ranking([0.975, 0.970], mnist1d)
    assert close.method == "none" and close.spread == pytest.approx(0.005) and math.sqrt(2) * close.se > 0.005
    assert "skipped" in close.describe() and "0.5%" in close.describe()
    # One configuration: nothing to rank.
    alone = ranking([0.975], mnist1d)
    assert alone.method == "none" and "one distinct configuration: nothing to rank" in alone.describe()


def test_the_chance_margin_is_the_expected_best_of_m_equal_configurations():
    from babysit.workflows.ranking import chance_margin

    se = standard_error(0.9, 1000)
    # One other configuration: one standard error of a difference; m of them: sqrt(2 ln m) of them.
    assert chance_margin(0.9, 1000, 1) == pytest.approx(math.sqrt(2) * se)
    assert chance_margin(0.9, 1000, 8) == pytest.approx(math.sqrt(2 * math.log(8)) * math.sqrt(2) * se)
    assert chance_margin(0.9, 1000, 16) > chance_margin(0.9, 1000, 8) > chance_margin(0.9, 4000, 8)


def test_the_search_stops_only_when_no_trial_beat_its_start_beyond_chance():
    from babysit.workflows.ranking import incumbent_test

    # 1,000 validation samples, 7 others: a 1-point gap is chance (margin about 2.7 points), 6 points is not.
    held = incumbent_test(0.90, [0.88, 0.91, 0.89, 0.85, 0.90, 0.87, 0.86], 1000)
    assert held.holds and held.best == 0.91 and 0.02 < held.margin < 0.035
    assert "within the" in held.describe() and "the search stops" in held.describe()
    beaten = incumbent_test(0.84, [0.88, 0.90, 0.89, 0.85, 0.90, 0.87, 0.86], 1000)
    assert not beaten.holds and "the search goes on" in beaten.describe()
    # A start that did not complete decides nothing against it; no other trial: the start is kept.
    assert not incumbent_test(None, [0.8], 1000).holds and incumbent_test(0.8, [], 1000).holds
    # On 45 validation rows a 4-point gain over 2 others is within chance; 40 points is not.
    assert incumbent_test(0.92, [0.93, 0.96], 45).holds and not incumbent_test(0.5, [0.93, 0.9], 45).holds


def test_a_lead_no_larger_than_what_the_start_still_gained_late_in_its_trial_does_not_end_the_start():
    from babysit.workflows.ranking import incumbent_test, still_rising, worth_folds

    # The MNIST-1D convnet's first stage at 2 epochs (seed 2 of bench/auto_results/2.5m.jsonl: a 7.5-point lead on 400
    # samples, past chance's 5.6 points, but the start gained 19 points in its second epoch): a faster rate, not a better one.
    short = incumbent_test(0.75, [0.82, 0.70, 0.78, 0.66, 0.80, 0.74], 400, still_rising([0.55, 0.75], 0.1))
    assert short.holds and short.too_short and short.margin < 0.07 < short.rising
    assert "second half of its trial" in short.describe() and "the search stops" in short.describe()
    assert short.to_dict()["too_short"] is True
    # The same lead after a start that had levelled off (1 point over its last half) is evidence: the search goes on.
    levelled = incumbent_test(0.75, [0.82, 0.70, 0.78, 0.66, 0.80, 0.74], 400, still_rising([0.5, 0.7, 0.74, 0.745, 0.75, 0.75], 0.1))
    assert not levelled.holds and not levelled.too_short and levelled.rising == pytest.approx(0.01)
    # A lead far past both (a start at a rate that barely learns) ends it however short the trials were.
    assert not incumbent_test(0.30, [0.85, 0.6], 400, still_rising([0.2, 0.3], 0.1)).holds
    # A one-epoch trial's late gain runs from chance (an untrained model's accuracy).
    assert still_rising([0.4], 0.1) == pytest.approx(0.3) and still_rising([], 0.1) == 0.0 and still_rising([0.6, 0.5], 0.1) == 0.0
    # More samples cannot make a trial longer: a start kept as too short is not re-scored by folds.
    kept = incumbent_test(0.80, [0.86, 0.81], 143, rising=0.1)
    assert kept.holds and not worth_folds(kept, 1437)


@given(curve=st.lists(st.floats(0.0, 1.0), max_size=50), chance=st.floats(0.0, 0.5))
def test_the_late_gain_is_a_share_of_accuracy_and_zero_for_a_flat_curve(curve, chance):
    from babysit.workflows.ranking import still_rising

    assert 0.0 <= still_rising(curve, chance) <= 1.0
    if curve:
        assert still_rising([curve[-1]] * max(2, len(curve)), chance) == 0.0


@given(p=st.floats(0.05, 0.95), n=st.integers(400, 100_000), m=st.integers(1, 200))
def test_the_chance_margin_shrinks_with_samples_and_grows_with_trials(p, n, m):
    from babysit.workflows.ranking import chance_margin

    assert chance_margin(p, 2 * n, m) < chance_margin(p, n, m) <= chance_margin(p, n, m + 1)


def test_cross_validation_is_run_only_where_it_could_overturn_a_start_that_held_on_a_small_split():
    from babysit.workflows.ranking import incumbent_test, worth_folds

    # 143 validation samples (digits): a 4-point lead is within the split's chance margin for the best of 7 ...
    held = incumbent_test(0.916, [0.958, 0.93, 0.9, 0.92, 0.91, 0.89, 0.94], 143)
    assert held.holds and held.margin > 0.042
    # ... but past what one comparison on the 1,437 pooled samples would explain: the folds can tell, so they run.
    assert worth_folds(held, 1437)
    assert not worth_folds(incumbent_test(0.916, [0.92, 0.90], 143), 1437)  # a lead the folds could not show either
    assert not worth_folds(incumbent_test(0.5, [0.9, 0.8], 143), 1437)  # the split already said the search goes on
    # A split that resolves a point decides by itself (MNIST-1D's 400 at 0.99).
    assert not worth_folds(incumbent_test(0.99, [0.995, 0.99], 4000), 40000)


def test_a_start_re_scored_by_folds_loses_to_a_clearly_better_rate(tmp_path):
    from sklearn.datasets import load_breast_cancer

    import babysit as bs
    from babysit.workflows.auto import _folds_verdict

    data = _table(tmp_path, load_breast_cancer)
    base = bs.build_config({"data": {"name": "arrays", "path": str(tmp_path / "table.npz")}, "model": {"name": "mlp", "hidden": [16]}})
    verdict = _folds_verdict(base, {"train.lr": 1e-6}, {"train.lr": 1e-2}, 5, data, 0, 7, [])
    assert verdict.folds == 5 and verdict.n == len(data.train.y) + len(data.val.y) == 456
    assert not verdict.holds and verdict.best - verdict.score > verdict.margin and "5-fold" in verdict.describe()
