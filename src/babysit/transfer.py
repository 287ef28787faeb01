"""Transfer learning helpers: reuse a trained body, train a new head (docs/lectures.md §10).

The lectures' recipe: with a small data set like the pre-training one, freeze
the network and retrain only the last layer; with more data, fine-tune all
layers with a lower learning rate (about 1/10) for the pre-trained body. The
"head" is the last `nn.Linear` of the model (the classifier of every built-in
model, and of most user models); everything before it is the "body".

    model = replace_head(pretrained, num_classes=5)
    fit(model, target_data, Recipe(lr=1e-3, body_lr_factor=0.1))   # fine-tune
    fit(model, target_data, Recipe(lr=1e-3, body_lr_factor=0.0))   # freeze all but the head
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from babysit.errors import ConfigError


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def head_name(model: nn.Module) -> str:
    """The qualified name of the model's head: its last `nn.Linear` (e.g. '5' in a Sequential)."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear layer to treat as its head; transfer needs a linear classifier")
    return names[-1]


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the head (weight and bias of the last Linear)."""
    return list(model.get_submodule(head_name(model)).parameters())


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """A copy of `model` whose head is a fresh Linear with `num_classes` outputs (the body's weights are kept).

    The new head starts at N(0,1)/sqrt(fan_in) (xavier, right for a linear output) with zero bias.
    """
    out = copy.deepcopy(model)
    name = head_name(out)
    old = out.get_submodule(name)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight.normal_(0.0, 1.0 / math.sqrt(old.in_features))
        if new.bias is not None:
            new.bias.zero_()
    _set_submodule(out, name, new)
    return out


class FrozenBatchNorm(nn.Module):
    """Batch norm with its running statistics and affine parameters fixed: y = gamma (x - mu) / sqrt(var + eps) + beta.

    A frozen body must compute the same features in training as at test time.
    A plain BatchNorm would normalise training batches with their own
    statistics (and keep updating its averages); this one always uses the
    pre-trained running averages, as torchvision's FrozenBatchNorm2d does.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        c = bn.num_features
        ones, zeros = torch.ones(c, device=bn.running_mean.device), torch.zeros(c, device=bn.running_mean.device)
        self.register_buffer("weight", bn.weight.detach().clone() if bn.affine else ones)
        self.register_buffer("bias", bn.bias.detach().clone() if bn.affine else zeros)
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        self.eps = bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        shape = (1, -1, *[1] * (x.ndim - 2))
        return x * scale.view(shape) + shift.view(shape)

    def extra_repr(self) -> str:
        return f"{len(self.weight)}, eps={self.eps}"


def freeze_all_but_head(model: nn.Module) -> nn.Module:
    """Stop training the body, in place: no gradients for its parameters, batch norm fixed at its statistics.

    Every batch-norm layer becomes a `FrozenBatchNorm` (the head is a Linear,
    so they all belong to the body); every parameter but the head's stops
    requiring gradients. Returns `model`.
    """
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            _set_submodule(model, name, FrozenBatchNorm(module))
    head = {id(p) for p in head_parameters(model)}
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
    return model


def param_groups(model: nn.Module, lr: float, body_lr_factor: float) -> list[dict]:
    """Optimiser parameter groups: the head at `lr`, the body at `lr * body_lr_factor`.

    A factor of 0 freezes the body (`freeze_all_but_head`) and returns the head
    group only. The head group comes first, so `param_groups[0]["lr"]` (the lr
    the history records) is the head's.

    Args:
        model: a (pre-trained) network whose last Linear is the head.
        lr: the head's learning rate.
        body_lr_factor: in [0, 1]; the lectures suggest ~0.1 for fine-tuning.
    """
    if not 0.0 <= body_lr_factor <= 1.0:
        raise ConfigError(f"body_lr_factor must be in [0, 1], got {body_lr_factor}")
    head = head_parameters(model)
    if body_lr_factor == 0.0:
        freeze_all_but_head(model)
        return [{"params": head, "lr": lr}]
    ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    return [{"params": head, "lr": lr}, {"params": body, "lr": lr * body_lr_factor}]
