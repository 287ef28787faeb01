"""The program observer on real hand-written loops: each classic bug is named first, with its evidence; healthy loops get nothing."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import babysit as bs
from babysit.diagnose.findings import rank, root_causes
from babysit.diagnose.program_rules import program_findings
from babysit.watch.program import ProgramWatch, at_default_init, batch_dependence, matching_losses, static_facts
from babysit.watch.schedule import Periodic

# A learnable 4-class problem: labels from a fixed linear teacher.
G = torch.Generator().manual_seed(0)
X = torch.randn(512, 20, generator=G)
Y = (X @ torch.randn(20, 4, generator=G)).argmax(1)


def mlp(dropout: float = 0.0, bn: bool = False, seed: int = 1) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 64), *([nn.BatchNorm1d(64)] if bn else []), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 4))


def train(model: nn.Module, opt: torch.optim.Optimizer, tmp_path, step=None, epochs: int = 3, loss_fn=F.cross_entropy, labels=True, sched=None):
    """A hand-written loop under bs.record; `step(model, opt, loss)` replaces the usual zero_grad/backward/step."""
    with bs.record(model, opt, runs_dir=tmp_path, name="run") as run:
        for _ in range(epochs):
            model.train()
            for xb, yb in zip(X.split(64), Y.split(64)):
                loss = loss_fn(model(xb), yb)
                if step is None:
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                else:
                    step(model, opt, loss)
                if sched is not None:
                    sched.step()
                run.log_step(loss, labels=yb if labels else None)
            model.eval()
            with torch.no_grad():
                val = model(X[:128])
            run.log_epoch(train_loss=float(loss), val_loss=float(F.cross_entropy(val, Y[:128])))
    return run


def program(run) -> list:
    return [f for f in rank(run.findings) if f.phase == "program" or f.rule == "activation_on_scores"]


def first_root(run) -> str:
    roots = root_causes(run.findings) or root_causes(run.findings, "warning")
    return roots[0].rule if roots else "nothing"


@pytest.mark.parametrize("set_to_none", [True, False])
def test_a_healthy_loop_has_no_program_finding_above_info(tmp_path, set_to_none):
    model = mlp(0.2, bn=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step(model, opt, loss):
        opt.zero_grad(set_to_none=set_to_none)
        loss.backward()
        opt.step()

    run = train(model, opt, tmp_path, step)
    assert [f.rule for f in program(run) if f.severity != "info"] == []
    facts = run.program
    assert facts["steps"] == 24 and facts["grad"]["backward_steps"] >= 5 and facts["batch"]["tested"] and facts["batch"]["changed"] == 0
    assert facts["loss"]["matches"].get("cross_entropy") == facts["loss"]["labels"] > 0


def test_gradient_accumulation_over_two_batches_is_not_a_missing_zero_grad(tmp_path):
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with bs.record(model, opt, runs_dir=tmp_path, name="acc") as run:
        for i, (xb, yb) in enumerate(zip(X.split(32), Y.split(32))):
            (F.cross_entropy(model(xb), yb) / 2).backward()
            if i % 2 == 1:
                opt.step()
                opt.zero_grad()
        run.log_epoch(train_loss=1.0, val_loss=1.0)
    assert not [f for f in program(run) if f.severity != "info"]


def test_a_missing_zero_grad_is_named_first_not_the_learning_rate(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(model, opt, loss):
        loss.backward()
        opt.step()

    run = train(model, opt, tmp_path, step)
    f = program(run)[0]
    assert f.rule == "grad_not_reset" and f.severity == "error" and f.first_seen == 2 and "zero_grad" in f.fix
    assert first_root(run) == "grad_not_reset"
    # Every learning-rate symptom it causes is explained by it, and says to fix it first.
    for s in run.findings:
        if s.rule in ("loss_explodes", "update_ratio_high", "plateau"):
            assert s.explained_by == "grad_not_reset" and "learning rate" not in s.fix


def test_zero_grad_between_backward_and_step_is_named(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(model, opt, loss):
        loss.backward()
        opt.zero_grad()
        opt.step()

    run = train(model, opt, tmp_path, step)
    assert first_root(run) == "grad_cleared_before_step"
    assert run.program["grad"]["cleared_count"] == run.program["grad"]["backward_steps"]


def test_step_before_backward_is_named(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(model, opt, loss):
        opt.zero_grad()
        opt.step()
        loss.backward()

    run = train(model, opt, tmp_path, step)
    assert first_root(run) == "step_before_backward"


def test_a_loop_that_never_steps_is_named(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(model, opt, loss):
        opt.zero_grad()
        loss.backward()

    run = train(model, opt, tmp_path, step)
    f = program(run)[0]
    assert f.rule == "optimizer_never_steps" and f.evidence["epochs"] == 3 and f.evidence["forwards"] > 0


def test_an_optimiser_over_a_copy_of_the_model_is_named_as_a_copy(tmp_path):
    model = mlp()
    opt = torch.optim.Adam(copy.deepcopy(model).parameters(), lr=1e-3)
    run = train(model, opt, tmp_path)
    f = program(run)[0]
    assert f.rule == "optimizer_params_not_in_model" and f.severity == "error" and f.evidence["strangers_copy_model"]
    assert "params_not_in_optimizer" not in [g.rule for g in run.findings]  # the copy explains it; not said twice
    assert first_root(run) == "optimizer_params_not_in_model"


def test_an_optimiser_over_the_head_only_names_the_body_it_leaves_out(tmp_path):
    model = mlp()
    opt = torch.optim.Adam(model[-1].parameters(), lr=1e-3)
    run = train(model, opt, tmp_path)
    f = next(f for f in run.findings if f.rule == "params_not_in_optimizer")
    assert f.severity == "error" and f.evidence["not_in_optimizer"] == ["0.weight", "0.bias"]


class Branchy(nn.Module):
    """A body, a head, and a way to cut the body off: detach, no_grad, or a layer never called."""

    def __init__(self, cut: str) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.cut = cut
        self.body = nn.Sequential(nn.Linear(20, 64), nn.ReLU())
        self.extra = nn.Linear(64, 64)
        self.head = nn.Linear(64, 4)

    def forward(self, x):
        if self.cut == "no_grad":
            with torch.no_grad():
                h = self.body(x)
        else:
            h = self.body(x)
            h = h.detach() if self.cut == "detach" else h
        h = self.extra(h) if self.cut != "unused" else h
        return self.head(h)


@pytest.mark.parametrize("cut, why", [("detach", "cut from the loss"), ("no_grad", "without gradient tracking"), ("unused", "never called")])
def test_parameters_no_gradient_reaches_are_named_by_module_and_why(tmp_path, cut, why):
    model = Branchy(cut)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    run = train(model, opt, tmp_path)
    f = next(f for f in run.findings if f.rule == "params_without_grad")
    missing = {w["module"] for w in f.evidence["without_grad"]}
    assert missing == ({"extra"} if cut == "unused" else {"body.0"})
    assert why in f.title


def test_eval_mode_left_on_is_an_error_and_frozen_batch_norm_in_eval_is_not(tmp_path):
    model = mlp(0.5, bn=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def step(model, opt, loss):
        model.eval()  # the bug: left in eval mode for the next batches
        opt.zero_grad()
        loss.backward()
        opt.step()

    run = train(model, opt, tmp_path, step)
    f = next(f for f in run.findings if f.rule == "eval_mode_in_training")
    assert f.severity == "error" and {"1", "3"} <= set(f.evidence["eval_modules"])
    # Transfer learning: the batch norm over frozen parameters held in eval mode on purpose.
    model = mlp(0.0, bn=True)
    model[1].requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)

    def frozen_bn(model, opt, loss):
        model[1].eval()
        opt.zero_grad()
        loss.backward()
        opt.step()

    run = train(model, opt, tmp_path / "frozen", frozen_bn)
    assert "eval_mode_in_training" not in [f.rule for f in run.findings]


def test_a_per_epoch_schedule_stepped_every_batch_is_named_and_a_cosine_over_the_run_is_not(tmp_path):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)  # meant: every 2 epochs
    run = train(model, opt, tmp_path, sched=sched, epochs=4)
    f = next(f for f in run.findings if f.rule == "lr_collapsed")
    assert f.evidence["change_every"] == 2 and f.evidence["steps_per_epoch"] == 8 and "stepped every batch" in f.title
    assert first_root(run) == "lr_collapsed"
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=32)
    run = train(model, opt, tmp_path / "cos", sched=cosine, epochs=4)
    assert "lr_collapsed" not in [f.rule for f in run.findings]


def test_a_softmax_before_cross_entropy_is_read_off_the_loss(tmp_path):
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    run = train(model, opt, tmp_path, loss_fn=lambda s, y: F.cross_entropy(F.softmax(s, 1), y))
    f = next(f for f in run.findings if f.rule == "activation_on_scores")
    assert f.severity == "error" and math.isclose(f.evidence["floor"], math.log(3 + math.e) - 1)
    # log_softmax then cross-entropy computes the same loss (log-softmax is idempotent): nothing to name.
    run = train(mlp(), torch.optim.Adam(mlp().parameters()), tmp_path / "ls", loss_fn=lambda s, y: F.cross_entropy(F.log_softmax(s, 1), y))
    assert "activation_on_scores" not in [f.rule for f in run.findings]


def test_nll_of_raw_scores_and_a_log_of_log_probabilities_are_named(tmp_path):
    run = train(mlp(), torch.optim.SGD(mlp().parameters(), lr=0.05), tmp_path)  # a copy's optimiser: not the point here
    model = mlp()
    run = train(model, torch.optim.SGD(model.parameters(), lr=0.05), tmp_path / "nll", loss_fn=F.nll_loss)
    assert first_root(run) == "loss_below_minimum"
    assert next(f for f in run.findings if f.rule == "loss_below_minimum").evidence["loss_matches"]["nll_of_scores"] > 0
    model = mlp()
    run = train(model, torch.optim.SGD(model.parameters(), lr=0.05), tmp_path / "log",
                loss_fn=lambda s, y: F.nll_loss(torch.log(F.log_softmax(s, 1)), y))  # fmt: skip
    assert first_root(run) == "loss_not_finite"


class Mixer(nn.Module):
    """A conv net whose reshape mixes the batch: `view` where a permute was meant."""

    def __init__(self, mix: bool) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.mix = mix
        self.conv = nn.Conv1d(1, 8, 5, padding=2)
        self.head = nn.Linear(8 * 20, 4)

    def forward(self, x):
        h = F.relu(self.conv(x.unsqueeze(1)))  # (N, 8, 20)
        if self.mix:
            h = h.view(8, len(x), 20).transpose(0, 1)
        return self.head(h.reshape(len(x), -1))


def test_examples_mixed_across_the_batch_are_named_with_batch_norm_accounted_for():
    x = X[:32]
    assert batch_dependence(Mixer(False), x)["changed"] == 0
    mixed = batch_dependence(Mixer(True), x)
    assert mixed["tested"] and mixed["changed"] >= 3 and mixed["max_change"] > 1e-2
    # Batch norm in training mode mixes the batch by design: measured in eval mode, a BN net is clean.
    bn = mlp(0.5, bn=True).train()
    assert batch_dependence(bn, x)["changed"] == 0 and bn.training and bn[1].training  # modes restored
    # A dropout that ignores self.training stays random in eval mode: both passes draw the same masks, so that
    # is the eval-mode check's finding, not a batch mixed up.
    class AlwaysDropout(nn.Module):
        def forward(self, x):
            return x * (torch.rand_like(x) > 0.5) * 2

    random_in_eval = nn.Sequential(AlwaysDropout(), nn.Linear(20, 4))
    state = torch.random.get_rng_state()
    assert batch_dependence(random_in_eval, x)["changed"] == 0
    assert torch.equal(torch.random.get_rng_state(), state)  # the run's random stream is untouched
    no_stats = nn.Sequential(nn.Linear(20, 8), nn.BatchNorm1d(8, track_running_stats=False))
    assert batch_dependence(no_stats, x) == {"tested": False, "reason": "a batch norm without running statistics normalises over the batch in eval mode too"}


def test_an_rnn_fed_batch_first_without_batch_first_mixes_examples(tmp_path):
    class Seq(nn.Module):
        def __init__(self, batch_first: bool) -> None:
            super().__init__()
            torch.manual_seed(4)
            self.rnn = nn.GRU(1, 16, batch_first=batch_first)
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            out, _ = self.rnn(x.unsqueeze(-1))  # (N, 20, 1): batch first
            return self.head(out[:, -1])

    assert batch_dependence(Seq(True), X[:32])["changed"] == 0
    model = Seq(False)
    run = train(model, torch.optim.Adam(model.parameters(), lr=3e-3), tmp_path, epochs=1)
    assert first_root(run) == "batch_mixing"


def test_frozen_layers_at_random_init_are_named_and_pretrained_frozen_layers_are_information():
    model = mlp()
    model[0].requires_grad_(False)
    assert at_default_init(model[0])
    found = program_findings({"params": static_facts(model, None)})
    assert [f.rule for f in found] == ["frozen_untrained"] and found[0].severity == "error"
    with torch.no_grad():  # "pretrained": moved well outside PyTorch's default interval
        model[0].weight.mul_(3.0)
    found = program_findings({"params": static_facts(model, None)})
    assert [(f.rule, f.severity) for f in found] == [("params_frozen", "info")]


def test_fit_runs_the_observer_and_diagnose_names_a_detached_body():
    data = bs.Dataset.from_arrays(X.numpy(), Y.numpy(), val_fraction=0.2, seed=0)
    result = bs.fit(Branchy("detach"), data, bs.Recipe(optimizer="adam", lr=3e-3, epochs=2, batch_size=64, device="cpu"), progress=False)
    assert result.program["where"] == "fit" and result.program["loss_known"]
    assert "params_without_grad" in [f.rule for f in bs.diagnose(result)]


def test_an_optimiser_step_with_a_closure_is_judged_after_the_closure(tmp_path):
    model = mlp()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4)
    with bs.record(model, opt, runs_dir=tmp_path, name="lbfgs") as run:
        for _ in range(3):
            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(model(X), Y)
                loss.backward()
                return loss

            loss = opt.step(closure)
            run.log_step(loss, labels=Y)
        run.log_epoch(train_loss=float(loss), val_loss=float(loss))
    assert [f.rule for f in program(run) if f.severity != "info"] == []
    assert run.program["grad"]["backward_steps"] == 2  # steps 1 and 2 are observed (the light schedule), step 3 is not


def test_matching_losses_reads_which_formula_a_loss_is():
    s, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    assert matching_losses(s, y, float(F.cross_entropy(s, y))) == ["cross_entropy", "cross_entropy_of_log_softmax"]
    assert matching_losses(s, y, float(F.nll_loss(s, y))) == ["nll_of_scores"]
    assert matching_losses(s, y, float("nan")) == []


def test_the_observer_removes_its_hooks_and_leaves_training_unchanged(tmp_path):
    def run_loop(observe: bool) -> torch.Tensor:
        model = mlp(0.3, bn=True)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        torch.manual_seed(9)
        watch = ProgramWatch().attach(model, opt) if observe else None
        for xb, yb in zip(X.split(64), Y.split(64)):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        if watch is not None:
            watch.close()
            assert not model._forward_hooks and not model._forward_pre_hooks and not opt._optimizer_step_pre_hooks
            assert all(not p._backward_hooks for p in model.parameters())
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(run_loop(True), run_loop(False))  # the batch test restores modes and the RNG


def test_between_observed_steps_the_observer_leaves_only_what_it_needs_on_the_model():
    """Unobserved steps pay for no hook that serves nothing: the children's forward hooks go once the loop is seen
    calling the model itself, removed gradient hooks leave no empty dict for autograd to call, and a user's own hook stays;
    a loop that calls a child directly (Lightning's `self.net(x)`) keeps the child's hooks, and both still count the validation size."""
    model = mlp(0.3, bn=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []
    model[0].bias.register_hook(lambda g: seen.append(1))
    watch = ProgramWatch(schedule=Periodic(period=0, warmup=2)).attach(model, opt)
    for xb, yb in zip(X.split(64)[:3], Y.split(64)[:3]):  # steps 1, 2 observed, 3 not
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.children())
    assert model._forward_hooks and model._forward_pre_hooks
    assert model[0].bias._backward_hooks and all(p._backward_hooks is None for n, p in model.named_parameters() if n != "0.bias")
    assert len(seen) == 3
    with torch.no_grad():
        model(X[:100])
    watch.epoch_end()
    assert watch.facts()["val_samples"] == [100]
    watch.close()

    outer = nn.Module()
    outer.net = mlp()
    opt = torch.optim.SGD(outer.parameters(), lr=0.05)
    watch = ProgramWatch(schedule=Periodic(period=0, warmup=2)).attach(outer, opt)
    for xb, yb in zip(X.split(64)[:3], Y.split(64)[:3]):
        opt.zero_grad()
        F.cross_entropy(outer.net(xb), yb).backward()
        opt.step()
    assert outer.net._forward_hooks and watch.facts()["forwards"] == 2  # steps 1 and 2 observed through the child
    with torch.no_grad():
        outer.net(X[:50])
    watch.epoch_end()
    assert watch.facts()["val_samples"] == [50]
    watch.close()
    assert not outer.net._forward_hooks and not outer._forward_hooks


def test_an_empty_batch_is_scores_not_a_crash():
    from babysit.watch.program import score_kind

    assert score_kind(torch.zeros(0, 4)) == "scores"


def test_the_report_says_which_program_checks_could_not_run_and_reads_a_damaged_program_file(tmp_path):
    from babysit.report.run_report import run_report

    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with bs.record(model, opt, runs_dir=tmp_path, name="quiet") as run:
        for xb, yb in zip(X.split(64), Y.split(64)):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        run.log_epoch(train_loss=1.0, val_loss=1.0)
    page = run_report(run.path, per_class=False).page().render()
    assert "<h2>Training program</h2>" in page and "run.log_step(loss)" in page
    (run.path / "program.json").write_text('{"grad": [1, 2', encoding="utf-8")
    report = run_report(run.path, per_class=False)
    assert any("program.json" in s for s in report.skipped) and "No program facts" in report.page().render()
    (run.path / "program.json").write_text('{"grad": [1, 2], "params": "x"}', encoding="utf-8")
    report = run_report(run.path, per_class=False)
    assert any("program.json: not babysit's" in s for s in report.skipped)


def test_eval_share_weights_the_sparse_later_observations_by_the_steps_they_stand_for():
    from hypothesis import given
    from hypothesis import strategies as st

    from babysit.diagnose.program_rules import eval_share

    # Observed at 1, 2, 4, 8, 16 in training mode, then in eval mode from step 32 to the end (96 steps).
    assert eval_share({"changes": [[1, False], [32, True]], "last_step": 64}, 96) == 65 / 96
    assert eval_share({"changes": [[1, True]], "last_step": 64}, 96) == 1.0
    assert eval_share({}, 96) == 0.0

    @given(st.lists(st.integers(1, 500), min_size=1, max_size=12, unique=True), st.booleans(), st.integers(0, 600))
    def share_in_unit_interval(steps, first, extra):
        steps = sorted(steps)
        changes = [[s, (i % 2 == 0) == first] for i, s in enumerate(steps)]
        assert 0.0 <= eval_share({"changes": changes, "last_step": steps[-1]}, steps[-1] + extra) <= 1.0

    share_in_unit_interval()


def test_validation_at_chance_is_input_independent_only_while_training_accuracy_rises():
    from babysit.diagnose.program_rules import generalisation

    facts = {"scores": {"classes": 4}, "val_samples": [400, 400, 400, 400]}  # chance 25%, standard error 2.2%
    def metrics(train, val):
        return [{"train_accuracy": t, "val_accuracy": v} for t, v in zip(train, val)]
    # shuffled labels: the net memorises its training labels, validation stays at chance
    found = generalisation(facts, metrics([0.26, 0.33, 0.41, 0.5], [0.25, 0.24, 0.26, 0.25]))
    assert [f.rule for f in found] == ["input_independent"] and found[0].evidence["standard_error"] == pytest.approx(0.0217, abs=1e-3)
    # a rate too high: the net collapses towards one class, training accuracy falls from its first epoch's
    assert generalisation(facts, metrics([0.5, 0.47, 0.32, 0.32], [0.26, 0.25, 0.25, 0.24])) == []
    # validation accuracy 3 standard errors above chance generalises
    assert generalisation(facts, metrics([0.26, 0.33, 0.41, 0.5], [0.25, 0.28, 0.3, 0.32])) == []
