"""Your own PyTorch loop, babysat with two added lines (marked "babysit"; a third, optional, guards divergence).

    python examples/own_loop.py                      # lr 0.05: trains to ~95% on the digits
    python examples/own_loop.py --lr 10              # too high: the diagnosis names the learning rate
    babysit report runs/<name>                       # the report of either run

The loop below is plain PyTorch on scikit-learn's 8x8 digits; `bs.record` puts
probes on the model and optimiser and writes runs/<name>/ (the run record
`babysit train` writes), `run.log_epoch` appends each epoch's metrics.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import babysit as bs


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--name", default=None, help="the run's folder name under --runs-dir")
    parser.add_argument("--runs-dir", default="runs")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0 - 0.5  # pixels 0..16 -> about zero-centred
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y))
    train, val = order[:1500], order[1500:]
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    with bs.record(model, optimizer, name=args.name, runs_dir=args.runs_dir) as run:  # babysit
        for epoch in range(args.epochs):
            model.train()
            total = 0.0
            for batch in train[torch.randperm(len(train))].split(64):
                loss = F.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
                if run.log_step(loss):  # babysit, optional: stop at NaN/inf or 3x the first loss
                    break
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
