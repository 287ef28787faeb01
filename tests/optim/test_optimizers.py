"""torch's optimisers against the lectures' update rules (docs/lectures.md §8), on the first steps of a quadratic.

f(x) = 1/2 x^T A x - b^T x with an ill-conditioned A; grad f = A x - b. Each
reference below is the lecture's rule written out in float64; torch must give
the same iterates to 1e-12.
"""

import math

import pytest
import torch

import babysit as bs
from babysit.optim.optimizers import FULL_BATCH, OPTIMIZERS, build_optimizer
from babysit.registry import accepted_options

A = torch.diag(torch.tensor([10.0, 3.0, 1.0, 0.3, 0.1], dtype=torch.float64))
B = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0], dtype=torch.float64)
X0 = torch.tensor([1.0, 1.0, -1.0, 2.0, 0.5], dtype=torch.float64)
HYPER = {"momentum": 0.9, "rho": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3}
LR = 0.05


def grad(x):
    return A @ x - B


def sgd(lr, steps, grad=grad, **h):
    x, out = X0.clone(), []
    for _ in range(steps):
        x = x - lr * grad(x)
        out.append(x)
    return out


def momentum(lr, steps, momentum, grad=grad, **h):
    x, v, out = X0.clone(), torch.zeros(5, dtype=torch.float64), []
    for _ in range(steps):
        v = momentum * v - lr * grad(x)
        x = x + v
        out.append(x)
    return out


def nesterov(lr, steps, momentum, grad=grad, **h):
    # The lecture's form: the gradient at the look-ahead point x + mu v. torch tracks
    # that look-ahead point itself, so its parameter is x + mu v.
    x, v, out = X0.clone(), torch.zeros(5, dtype=torch.float64), []
    for _ in range(steps):
        v = momentum * v - lr * grad(x + momentum * v)
        x = x + v
        out.append(x + momentum * v)
    return out


def adagrad(lr, steps, eps, grad=grad, **h):
    x, cache, out = X0.clone(), torch.zeros(5, dtype=torch.float64), []
    for _ in range(steps):
        g = grad(x)
        cache = cache + g**2
        x = x - lr * g / (cache.sqrt() + eps)
        out.append(x)
    return out


def rmsprop(lr, steps, rho, eps, grad=grad, **h):
    x, cache, out = X0.clone(), torch.zeros(5, dtype=torch.float64), []
    for _ in range(steps):
        g = grad(x)
        cache = rho * cache + (1 - rho) * g**2
        x = x - lr * g / (cache.sqrt() + eps)
        out.append(x)
    return out


def adam(lr, steps, beta1, beta2, eps, grad=grad, **h):
    x, m, v, out = X0.clone(), torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64), []
    for t in range(1, steps + 1):
        g = grad(x)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)  # bias correction
        x = x - lr * m_hat / (v_hat.sqrt() + eps)
        out.append(x)
    return out


def adamw(lr, steps, beta1, beta2, eps, grad=grad, weight_decay=0.0, **h):
    # Loshchilov & Hutter (2019), Algorithm 2: decay the weights by lr*lambda apart from the Adam step.
    x, m, v, out = X0.clone(), torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64), []
    for t in range(1, steps + 1):
        g = grad(x)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        x = x - lr * weight_decay * x - lr * m_hat / (v_hat.sqrt() + eps)
        out.append(x)
    return out


REFERENCES = {"sgd": sgd, "momentum": momentum, "nesterov": nesterov, "adagrad": adagrad, "rmsprop": rmsprop, "adam": adam, "adamw": adamw}


def torch_iterates(name, lr, steps, lrs=None, **options):
    x = X0.clone().requires_grad_()
    opt = build_optimizer(name, [x], lr, **accepted_options(OPTIMIZERS.get(name), {**HYPER, **options}))  # each its own
    out = []
    for t in range(steps):
        if lrs is not None:
            opt.param_groups[0]["lr"] = lrs[t]
        opt.zero_grad()
        loss = 0.5 * x @ A @ x - B @ x
        loss.backward()
        opt.step()
        out.append(x.detach().clone())
    return out


def test_every_registered_optimizer_has_a_reference_rule_here():
    assert set(REFERENCES) | FULL_BATCH == set(OPTIMIZERS.names())


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS.names() if n not in FULL_BATCH])
def test_torch_follows_the_lecture_update_rule(name):
    ours = torch_iterates(name, LR, 8)
    ref = REFERENCES[name](LR, 8, **HYPER)
    for t, (a, b) in enumerate(zip(ours, ref)):
        assert torch.allclose(a, b, rtol=0, atol=1e-12), f"{name} differs from the lecture's rule at step {t + 1}"
    assert (0.5 * ours[-1] @ A @ ours[-1] - B @ ours[-1]) < (0.5 * X0 @ A @ X0 - B @ X0)  # and it descends


def test_adam_bias_correction_makes_the_first_step_lr_in_every_coordinate():
    (x1,) = torch_iterates("adam", 0.01, 1, eps=1e-8)
    step = (x1 - X0).abs()
    g = grad(X0).abs()
    assert torch.allclose(step, 0.01 * g / (g + 1e-8), rtol=0, atol=1e-12)  # ~ lr, whatever the gradient's scale
    # Without the correction the first step would be lr * (1 - b1) / sqrt(1 - b2) ~ 3.2 lr.
    assert not torch.allclose(step, torch.full_like(step, 0.01 * 0.1 / math.sqrt(0.001)), rtol=0.1)


@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam"])
def test_eps_sits_outside_the_square_root_as_in_the_lectures(name):
    # Documented form: x -= lr g / (sqrt(cache) + eps), with eps = 1e-3 so that its place matters.
    ours = torch_iterates(name, LR, 5)[-1]
    assert torch.allclose(ours, REFERENCES[name](LR, 5, **HYPER)[-1], rtol=0, atol=1e-12)


def test_rmsprop_with_eps_inside_the_root_would_differ():
    # TensorFlow's RMSProp divides by sqrt(cache + eps); torch (and the lectures) do not.
    ours = torch_iterates("rmsprop", LR, 5)[-1]
    x, cache = X0.clone(), torch.zeros(5, dtype=torch.float64)
    for _ in range(5):
        g = grad(x)
        cache = HYPER["rho"] * cache + (1 - HYPER["rho"]) * g**2
        x = x - LR * g / (cache + HYPER["eps"]).sqrt()
    assert (x - ours).abs().max() > 1e-4


def test_torch_momentum_equals_the_lecture_only_while_the_learning_rate_is_constant():
    lrs = [0.05] * 3 + [0.01] * 3  # a step decay after 3 steps
    ours = torch_iterates("momentum", lrs[0], 6, lrs=lrs)
    # The documented torch form: b = mu b + g; x -= lr_t b (the whole velocity rescales with lr).
    x, b_, documented = X0.clone(), torch.zeros(5, dtype=torch.float64), []
    # The lecture form with a per-step lr: v = mu v - lr_t g; x += v.
    y, v, lecture = X0.clone(), torch.zeros(5, dtype=torch.float64), []
    for lr in lrs:
        b_ = 0.9 * b_ + grad(x)
        x = x - lr * b_
        documented.append(x)
        v = 0.9 * v - lr * grad(y)
        y = y + v
        lecture.append(y)
    assert all(torch.allclose(a, d, rtol=0, atol=1e-12) for a, d in zip(ours, documented))
    assert all(torch.allclose(a, l, rtol=0, atol=1e-12) for a, l in zip(ours[:3], lecture[:3]))
    assert (ours[-1] - lecture[-1]).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_weight_decay_adds_lambda_w_to_the_gradient(name):
    lam = 0.1
    ours = torch_iterates(name, LR, 4, weight_decay=lam)
    ref = REFERENCES[name](LR, 4, grad=lambda x: grad(x) + lam * x, **HYPER)  # L2: d/dx (lam/2 |x|^2) = lam x
    assert all(torch.allclose(a, r, rtol=0, atol=1e-12) for a, r in zip(ours, ref))


def test_lbfgs_full_batch_reaches_the_newton_solution_of_a_quadratic():
    # Newton's x* = A^-1 b, no learning rate needed; L-BFGS approximates H^-1 from gradients.
    x = X0.clone().requires_grad_()
    opt = build_optimizer("lbfgs", [x], 1.0)

    def closure():
        opt.zero_grad()
        loss = 0.5 * x @ A @ x - B @ x
        loss.backward()
        return loss

    opt.step(closure)
    solution = torch.linalg.solve(A, B)
    assert (x.detach() - solution).abs().max() < 1e-4 * solution.abs().max()
    # Plain SGD with the largest stable rate (2/lambda_max) is still far away after as many steps (condition number 100).
    assert (sgd(1.9 / 10.0, 20)[-1] - solution).abs().max() > 1.0


def test_every_optimizer_trains_a_net_through_fit(digits):
    for name in OPTIMIZERS.names():
        bs.train.seed_everything(0)
        net = bs.blocks.mlp(digits.input_shape, 10, hidden=(32,))
        result = bs.fit(net, digits, bs.Recipe(optimizer=name, epochs=3, device="cpu"), progress=False)
        assert result.test_accuracy > 0.5, name  # chance is 0.1; each at its default lr, 39 steps


def test_adamw_decouples_weight_decay_from_the_adaptive_step():
    lam = 0.1
    ours = torch_iterates("adamw", LR, 6, weight_decay=lam)
    ref = adamw(LR, 6, weight_decay=lam, **HYPER)
    assert all(torch.allclose(a, r, rtol=0, atol=1e-12) for a, r in zip(ours, ref))
    # Adam's coupled L2 (lam*x added to the gradient, then divided by sqrt(v)) takes other steps.
    coupled = torch_iterates("adam", LR, 6, weight_decay=lam)
    assert (coupled[-1] - ours[-1]).abs().max() > 1e-3
