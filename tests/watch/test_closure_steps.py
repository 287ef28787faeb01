"""Probes on `optimizer.step(closure)` (Lightning, L-BFGS): the gradients come from inside the step."""

import torch
import torch.nn.functional as F
from torch import nn

import babysit as bs


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    return model, x, y


def _plain_grad_norms(model, opt, x, y, steps):
    """Reference: backward before step, the loop the pre-hook snapshot was written for."""
    norms = []
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        norms.append(torch.linalg.vector_norm(model[0].weight.grad).item())
        opt.step()
    return norms


def test_closure_steps_record_this_steps_gradients():
    model, x, y = _setup()
    reference = _plain_grad_norms(model, torch.optim.SGD(model.parameters(), lr=0.5), x, y, 3)

    model, x, y = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def closure():  # what Lightning passes: zero_grad and backward happen inside the step
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    with bs.watch(model, opt, preset="full") as w:
        for _ in range(3):
            opt.step(closure)
    got = [r["params"]["0.weight"]["grad_norm"] for r in w.records]
    assert [r["step"] for r in w.records] == [1, 2, 3]
    assert max(abs(a - b) / b for a, b in zip(got, reference)) < 1e-6  # this step's gradients, not the previous step's
    # The update ratio is that of this step: lr * ||grad|| / ||W|| for plain SGD.
    first = w.records[0]["params"]["0.weight"]
    assert abs(first["update_ratio"] - 0.5 * first["grad_norm"] / first["weight_norm"]) < 1e-6


def test_lbfgs_closure_is_probed_once_per_step():
    model, x, y = _setup()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    with bs.watch(model, opt, preset="full") as w:
        opt.step(closure)
    assert len(calls) > 1  # L-BFGS re-evaluates; the probe still writes one record, with gradients
    assert len(w.records) == 1 and w.records[0]["params"]["0.weight"]["grad_norm"] > 0
