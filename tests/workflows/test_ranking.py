"""Ranking on the validation split, or by k-fold cross-validation when the split's standard error is too large."""

import math

import pytest
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
