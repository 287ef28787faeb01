"""Strategies and coarse-to-fine planning, on synthetic scores (no training): pure functions of the outcomes."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babysit.errors import ConfigError
from babysit.tune.search import STRATEGIES, Outcome, TuneSettings, edge_warnings, grid_counts, narrow, plan_stage, ranked
from babysit.tune.space import choice, int_uniform, log_uniform, one_minus_log, uniform

SPACE = {
    "train.lr": log_uniform(1e-4, 10),
    "train.weight_decay": log_uniform(1e-6, 1e-1),
    "train.momentum": one_minus_log(0.5, 0.999),
    "model.hidden": int_uniform(16, 256, log=True),
}


def score(values):
    """A smooth synthetic objective with its optimum at lr=1e-2, beta=0.99, wd=1e-4, hidden=128."""
    return (
        1.0
        - 0.10 * (math.log10(values["train.lr"]) + 2) ** 2
        - 0.05 * (math.log10(1 - values["train.momentum"]) + 2) ** 2
        - 0.01 * (math.log10(values["train.weight_decay"]) + 4) ** 2
        - 0.02 * (math.log2(values["model.hidden"]) - 7) ** 2
    )


def run_synthetic(settings):
    """Plan and 'run' every stage with the synthetic score; return the outcomes and plans."""
    outcomes, plans = [], []
    for stage in range(1, settings.num_stages() + 1):
        plan = plan_stage(stage, SPACE, settings, outcomes)
        plans.append(plan)
        outcomes += [Outcome(stage, i, c, score(c)) for i, c in enumerate(plan.configs)]
    return outcomes, plans


def test_every_strategy_is_registered_with_a_description():
    assert set(STRATEGIES.names()) == {"random", "grid", "tpe", "coarse_to_fine"}
    assert all(e.description for e in STRATEGIES.entries())


def test_the_grid_of_40_over_four_parameters_is_5x2x2x2():
    assert grid_counts(SPACE, 40) == [5, 2, 2, 2]
    plan = plan_stage(1, SPACE, TuneSettings(strategy="grid", trials=40), [])
    points = {tuple(sorted(c.items())) for c in plan.configs}
    assert len(plan.configs) == len(points) == 40
    assert len({c["train.lr"] for c in plan.configs}) == 5  # a grid tries few distinct values of each parameter


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.lists(st.one_of(st.none(), st.integers(1, 6)), min_size=1, max_size=4))
def test_grid_is_the_largest_within_budget_and_respects_small_parameters(n, sizes):
    space = {f"k{i}": (log_uniform(1e-3, 1) if s is None else choice(list(range(s)))) for i, s in enumerate(sizes)}
    counts = grid_counts(space, n)
    assert math.prod(counts) <= n
    assert all(s is None or c <= s for c, s in zip(counts, sizes))
    # No single parameter could take one more value within the budget.
    for c, s in zip(counts, sizes):
        if s is None or c < s:
            assert math.prod(counts) // c * (c + 1) > n


def test_random_search_tries_a_distinct_value_of_every_parameter_per_trial():
    plan = plan_stage(1, SPACE, TuneSettings(strategy="random", trials=40), [])
    assert len({c["train.lr"] for c in plan.configs}) == 40  # Bergstra & Bengio: 40 values, not 5
    lrs = np.log10([c["train.lr"] for c in plan.configs])
    assert lrs.min() >= -4 and lrs.max() <= 1


def test_proposals_are_a_pure_function_of_seed_stage_and_slot():
    a = plan_stage(1, SPACE, TuneSettings(trials=10, seed=3), [])
    b = plan_stage(1, SPACE, TuneSettings(trials=10, seed=3), [])
    c = plan_stage(1, SPACE, TuneSettings(trials=10, seed=4), [])
    assert a.configs == b.configs and a.configs != c.configs
    assert plan_stage(1, SPACE, TuneSettings(strategy="tpe", trials=5), []).configs == [None] * 5


def test_settings_split_trials_and_grow_epochs():
    s = TuneSettings(strategy="coarse_to_fine", trials=41, stages=3, epochs=2, epoch_growth=3)
    assert s.stage_trials() == [14, 14, 13] and sum(s.stage_trials()) == 41
    assert [s.stage_epochs(k) for k in (1, 2, 3)] == [2, 6, 18]
    assert TuneSettings(strategy="random", trials=7, stages=3).stage_trials() == [7]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strategy": "bayes"}, "unknown search strategy 'bayes'"),
        ({"prune": "hyperband"}, "unknown pruner 'hyperband'"),
        ({"trials": 0}, "tune.trials must be at least 1"),
        ({"strategy": "coarse_to_fine", "trials": 2, "stages": 3}, "must be at least tune.stages"),
        ({"divergence_factor": 1.0}, "divergence_factor must be > 1"),
        ({"epoch_growth": 0.5}, "epoch_growth must be >= 1"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TuneSettings(**kwargs)


def test_coarse_to_fine_narrows_every_range_around_the_top_trials_in_log_space():
    s = TuneSettings(strategy="coarse_to_fine", trials=40, stages=2, epochs=1, top_k=5, widen=False)
    outcomes, (coarse, fine) = run_synthetic(s)
    top = ranked([o for o in outcomes if o.stage == 1])[:5]
    for key, p in coarse.space.items():
        lo, hi = p.t_range()
        a, b = fine.space[key].t_range()
        assert lo - 1e-9 <= a and b <= hi + 1e-9, key  # inside the coarse range
        ts = [p.to_t(o.values[key]) for o in top]
        assert a <= min(ts) + 1e-9 and max(ts) - 1e-9 <= b, key  # holds the top-k
        assert b - a < hi - lo, key  # narrower
    # lr's range shrinks around the optimum 1e-2: it now spans well under the coarse 5 decades.
    a, b = fine.space["train.lr"].t_range()
    assert a < -2 < b and b - a <= 3
    assert fine.carried == 1 and fine.configs[0] == top[0].values  # the best is re-run, longer
    assert fine.epochs == 3


def test_coarse_to_fine_beats_random_on_a_smooth_objective_at_equal_budget():
    wins = 0
    for seed in range(5):
        c2f, _ = run_synthetic(TuneSettings(strategy="coarse_to_fine", trials=40, stages=2, seed=seed))
        rnd, _ = run_synthetic(TuneSettings(strategy="random", trials=40, seed=seed))
        wins += max(o.score for o in c2f) >= max(o.score for o in rnd)
    assert wins >= 4


def test_edges_are_the_outer_tenth_of_a_range_in_transformed_space():
    lr = log_uniform(1e-4, 1)  # t in [-4, 0]: the edges are t < -3.6 and t > -0.4
    assert [w.side for w in edge_warnings({"train.lr": lr}, {"train.lr": 0.5}, 1)] == ["upper"]
    assert [w.side for w in edge_warnings({"train.lr": lr}, {"train.lr": 2e-4}, 1)] == ["lower"]
    assert edge_warnings({"train.lr": lr}, {"train.lr": 0.3}, 1) == []  # t = -0.52: inside
    beta = one_minus_log(0.5, 0.999)  # beta close to 1 is the upper edge although its t is the smallest
    (w,) = edge_warnings({"train.momentum": beta}, {"train.momentum": 0.9985}, 2)
    assert w.side == "upper" and w.stage == 2
    assert "train.momentum" in str(w) and "widen the range upward" in str(w)


def test_best_at_the_edge_re_centres_the_range_when_widening_is_allowed():
    lr = log_uniform(1e-4, 1e-2)
    top = [Outcome(1, 0, {"train.lr": 9e-3}, 0.9), Outcome(1, 1, {"train.lr": 5e-3}, 0.8)]
    widened, notes = narrow({"train.lr": lr}, top, [], widen=True, stage=1)
    a, b = widened["train.lr"].t_range()
    assert a == pytest.approx(math.log10(9e-3) - 1) and b == pytest.approx(math.log10(9e-3) + 1)  # same width, past the edge
    assert "re-centred" in notes[0]
    narrowed, _ = narrow({"train.lr": lr}, top, [], widen=False, stage=1)
    assert narrowed["train.lr"].high <= 1e-2 + 1e-15


def test_widening_stays_inside_each_kind_s_domain():
    top = [Outcome(1, 0, {"b": 0.0, "d": 0.49, "w": 2}, 0.9)]
    space = {"b": one_minus_log(0.0, 0.9), "d": uniform(0.0, 0.5), "w": int_uniform(1, 64, log=True)}
    new, _ = narrow(space, top, [], widen=True, stage=1)
    assert new["b"].t_range()[1] <= 0.0  # beta >= 0
    assert new["d"].high <= 0.5  # a linear range is the whole domain
    assert new["w"].low >= 1


def test_choices_narrow_to_what_the_top_trials_used():
    space = {"model.activation": choice(["relu", "tanh", "sigmoid"]), "train.lr": log_uniform(1e-3, 1)}
    top = [Outcome(1, 0, {"model.activation": "relu", "train.lr": 0.1}, 0.9), Outcome(1, 1, {"model.activation": "tanh", "train.lr": 0.05}, 0.8)]
    new, _ = narrow(space, top, [], widen=False, stage=1)
    assert new["model.activation"].options == ("relu", "tanh")
    # Optuna's distribution keeps every value, so a narrowed stage is the same CategoricalDistribution.
    assert new["model.activation"].choices == ("relu", "tanh", "sigmoid")
    assert new["model.activation"].distribution() == space["model.activation"].distribution()
    assert all(new["model.activation"].sample(np.random.default_rng(i)) != "sigmoid" for i in range(50))


def test_a_stage_without_any_score_keeps_its_ranges():
    s = TuneSettings(strategy="coarse_to_fine", trials=4, stages=2, epochs=1)
    first = plan_stage(1, SPACE, s, [])
    dead = [Outcome(1, i, c, None) for i, c in enumerate(first.configs)]
    second = plan_stage(2, SPACE, s, dead)
    assert second.space == first.space and second.carried == 0
    assert "no trial of stage 1 finished" in second.notes[0]


def test_an_incumbent_takes_the_first_slot_of_the_first_stage_and_the_stage_keeps_its_size():
    settings = TuneSettings(strategy="coarse_to_fine", trials=12, stages=2, seed=1)
    start = {"train.lr": 3e-3, "train.weight_decay": 1e-4, "train.momentum": 0.9, "model.hidden": 64}
    plan = plan_stage(1, SPACE, settings, [], incumbent=start)
    plain = plan_stage(1, SPACE, settings, [])
    assert plan.configs[0] == start and len(plan.configs) == len(plain.configs) == 6
    assert start not in plain.configs and all(c is not None for c in plan.configs[1:])
    # Stage 2 narrows around stage 1's outcomes whoever proposed them: the incumbent, if best, is carried.
    outcomes = [Outcome(1, i, c, 1.0 if i == 0 else 0.5) for i, c in enumerate(plan.configs)]
    assert plan_stage(2, SPACE, settings, outcomes, incumbent=start).configs[0] == start


@pytest.mark.parametrize("grace", [0, -1])
def test_a_grace_period_under_one_epoch_is_refused(grace):
    with pytest.raises(ConfigError, match="tune.grace must be at least 1 epoch"):
        TuneSettings(grace=grace)


def test_successive_halving_judges_a_trial_first_at_its_grace_period():
    from babysit.tune.pruning import PRUNERS

    assert PRUNERS.get("halving")(4)._min_resource == 4
    assert PRUNERS.get("median")(4)._n_warmup_steps == 4
