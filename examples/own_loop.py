"""Your own PyTorch loop, babysat with two added lines (marked "babysit"; a third, optional, checks each step's loss).

    python examples/own_loop.py                        # lr 0.05: trains to ~95% on the digits
    python examples/own_loop.py --lr 10                # too high: the diagnosis names the learning rate
    python examples/own_loop.py --bug no-zero-grad     # a bug in the loop itself: the diagnosis names the line
    babysit report runs/<name>                         # the report of any of them

The loop below is plain PyTorch on scikit-learn's 8x8 digits; `bs.record` puts
probes and the program observer on the model and optimiser and writes
runs/<name>/ (the run record `babysit train` writes), `run.log_epoch` appends
each epoch's metrics. `--bug` plants one of the silent bugs people write into
their own loops (see `BUGS`); each trains without an error, badly, and the
diagnosis names it first instead of blaming the learning rate.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import babysit as bs

# Each bug: what it changes in the loop below, and the finding that names it.
BUGS = {
    "no-zero-grad": "optimizer.zero_grad() is never called (grad_not_reset)",
    "zero-grad-after-backward": "zero_grad() between backward() and step() (grad_cleared_before_step)",
    "eval-mode": "model.eval() for validation, and no model.train() before the next epoch (eval_mode_in_training)",
    "schedule-every-batch": "StepLR(step_size=3 epochs) stepped after every batch (lr_collapsed)",
    "softmax-before-loss": "F.cross_entropy(F.softmax(scores)) (activation_on_scores)",
    "detached-body": "the hidden layer's output .detach()ed before the head (params_without_grad)",
}


class Net(nn.Module):
    """A 64-128-10 MLP with dropout; `detach` cuts the hidden layer off the loss (the detached-body bug)."""

    def __init__(self, detach: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2))
        self.head = nn.Linear(128, 10)
        self.detach = detach

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.head(h.detach() if self.detach else h)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--bug", choices=sorted(BUGS), default=None, help="plant one bug in the loop: " + "; ".join(f"{k}: {v}" for k, v in BUGS.items()))
    parser.add_argument("--name", default=None, help="the run's folder name under --runs-dir")
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args(argv)
    bug = args.bug

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0 - 0.5  # pixels 0..16 -> about zero-centred
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y))
    train, val = order[:1500], order[1500:]
    model = Net(detach=bug == "detached-body")
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)  # halve the rate every 3 epochs

    with bs.record(model, optimizer, name=args.name, runs_dir=args.runs_dir) as run:  # babysit
        for epoch in range(args.epochs):
            if bug != "eval-mode" or epoch == 0:
                model.train()
            total = 0.0
            for batch in train[torch.randperm(len(train))].split(64):
                scores = model(x[batch])
                loss = F.cross_entropy(F.softmax(scores, 1) if bug == "softmax-before-loss" else scores, y[batch])
                if bug == "zero-grad-after-backward":
                    loss.backward()
                    optimizer.zero_grad()
                else:
                    if bug != "no-zero-grad":
                        optimizer.zero_grad()
                    loss.backward()
                optimizer.step()
                if bug == "schedule-every-batch":
                    scheduler.step()
                total += loss.item() * len(batch)
                if run.log_step(loss, labels=y[batch]):  # babysit, optional: stop at NaN/inf or 3x the first loss; check the loss
                    break
            if bug != "schedule-every-batch":
                scheduler.step()
            model.eval()
            with torch.no_grad():
                out = model(x[val])
            val_loss = F.cross_entropy(out, y[val]).item()
            val_accuracy = (out.argmax(1) == y[val]).float().mean().item()
            print(f"epoch {epoch + 1}: train loss {total / len(train):.4f}  val loss {val_loss:.4f}  val acc {val_accuracy:.3f}")
            run.log_epoch(train_loss=total / len(train), val_loss=val_loss, val_accuracy=val_accuracy)  # babysit
            if run.status == "diverged":
                break

    report = bs.run_report(run.path, per_class=False)  # what `babysit report runs/<name>` shows
    report.print()
    print(f"report: {report.write()}")
    return str(run.path)


if __name__ == "__main__":
    main()
