"""Watch a hand-written PyTorch loop: per-layer activation statistics and update ratios."""

import torch
import torch.nn.functional as F

import babysit as bs

torch.manual_seed(0)
model = bs.blocks.mlp((64,), 10, hidden=(100, 100), activation="tanh", init="xavier")
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(512, 64), torch.randint(0, 10, (512,))

with bs.watch(model, opt, preset="full") as w:  # or every=10, or every=lambda step: step % 10 == 0
    for i in range(0, 512, 64):
        opt.zero_grad()
        F.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
        opt.step()  # the optimiser's step hooks finish each probed step's record

last = w.records[-1]
for name, layer in last["layers"].items():
    extra = {k: round(v, 3) for k, v in layer.items() if k.endswith("_fraction")}
    print(f"layer {name:>2} {layer['type']:<7} act std {layer['act_std']:.3f} {extra}")
for name, p in last["params"].items():
    print(f"{name:<9} update/weight {p['update_ratio']:.1e}")  # the lectures want about 1e-3
