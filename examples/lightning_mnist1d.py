"""A PyTorch Lightning module on MNIST-1D, babysat by one callback (the line marked "babysit").

    python examples/lightning_mnist1d.py                 # SGD lr 0.1: ~60% val accuracy in 10 epochs
    python examples/lightning_mnist1d.py --lr 50         # too high: stopped as diverged, the learning rate named
    babysit report runs/<name>                           # the report again, from the run record

`Babysit()` probes the module, stops a diverging run, writes runs/<name>/ (the run
record `babysit train` writes) from the metrics the module logs (train_loss,
val_loss, train_accuracy, val_accuracy) and prints the findings and the report path.
Needs `pip install 'babysit[lightning]'`.
"""

from __future__ import annotations

import argparse
import logging
import warnings

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import babysit as bs
from babysit.integrations.lightning import Babysit


class MLP(pl.LightningModule):
    """A two-layer ReLU network on the 40 MNIST-1D samples; logs the metrics babysit reads."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(40, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _scores(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        scores = self(x)
        loss = F.cross_entropy(scores, y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True)
        self.log(f"{stage}_accuracy", (scores.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._scores(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._scores(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (momentum 0.9)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="runs", help="the folder holding run records")
    parser.add_argument("--name", default=None, help="the run's folder name under --out")
    parser.add_argument("--quiet", action="store_true", help="no Lightning progress bar or start-up lines")
    args = parser.parse_args(argv)

    if args.quiet:
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")  # in-memory tensors need no workers
    pl.seed_everything(0, verbose=False)
    data = bs.prepare(bs.load_dataset("mnist1d"))  # standardised with the training split's statistics
    train = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=100, shuffle=True)
    val = DataLoader(TensorDataset(data.val.x, data.val.y), batch_size=400)

    babysit = Babysit(name=args.name, runs_dir=args.out)  # babysit
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        callbacks=[babysit],
        logger=False,  # the run record is the log
        enable_checkpointing=False,
        enable_model_summary=not args.quiet,
        enable_progress_bar=not args.quiet,
    )
    trainer.fit(MLP(args.lr), train, val)  # ends with the findings and "report: runs/<name>/report.html"
    return str(babysit.run.path)


if __name__ == "__main__":
    main()
