"""A Hugging Face `Trainer` fine-tuning a tiny BERT, babysat by one callback (the line marked "babysit").

    python examples/hf_trainer.py                        # AdamW 5e-3, 20 warm-up steps: ~60% val accuracy in 5 epochs
    python examples/hf_trainer.py --lr 0.5 --warmup 0    # far too high, no warm-up: stopped as diverged, the rate named
    babysit report runs/<name>                           # the report again, from the run record

The model is built from a `BertConfig` (2 layers, width 32: no download) and classifies
scikit-learn's 8x8 digits read as sentences: each image is 64 tokens after a [CLS]
token, one per pixel, whose id says which pixel and how bright it is. `Babysit()` probes the
model (inside each block: the attention's query/key/value and output projections,
the feed-forward layers and their GELU, the layer norms), stops a diverging run,
writes runs/<name>/ (the run record `babysit train` writes) from the Trainer's
evaluations, and prints the findings and the report path.
Needs `pip install 'babysit[hf]'`.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

from babysit.integrations.huggingface import Babysit

LEVELS = 3  # each pixel's intensity 0..16 is read as dark, mid or bright
CLS = 64 * LEVELS  # tokens 0..191 are (pixel, level) pairs; the last id is [CLS]


def digit_sentences() -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """The digits as (train, val) lists of {"input_ids": (65,), "labels": ()} (80/20, a fixed shuffle).

    Token i of an image is 3 * i + its level: which pixel, and how bright (a word per
    pixel and shade), after [CLS]; BERT's position embeddings give the order.
    """
    digits = load_digits()
    pixels = torch.tensor(digits.data, dtype=torch.long)
    ids = torch.cat([torch.full((len(pixels), 1), CLS), torch.arange(64) * LEVELS + pixels * LEVELS // 17], 1)
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    rows = [{"input_ids": ids[i], "labels": labels[i]} for i in order.tolist()]
    cut = int(0.8 * len(rows))
    return rows[:cut], rows[cut:]


def accuracy(prediction) -> dict[str, float]:
    """compute_metrics: the share of validation images whose class has the highest score."""
    return {"accuracy": float((np.argmax(prediction.predictions, 1) == prediction.label_ids).mean())}


def tiny_bert() -> BertForSequenceClassification:
    """A 2-layer BERT of width 32 for 10 classes, randomly initialised from its config."""
    config = BertConfig(vocab_size=CLS + 1, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=65, num_labels=10)  # fmt: skip
    return BertForSequenceClassification(config)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=5e-3, help="AdamW learning rate")
    parser.add_argument("--warmup", type=int, default=20, help="optimiser steps the rate warms up over, from 0 (0: none)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="runs", help="the folder holding run records")
    parser.add_argument("--name", default=None, help="the run's folder name under --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or Trainer log lines")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    train, val = digit_sentences()
    if args.quiet:
        hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", ".*pin_memory.*")  # no accelerator here: pinning has nothing to do
    babysit = Babysit(name=args.name, runs_dir=args.out)  # babysit
    with tempfile.TemporaryDirectory() as scratch:  # the run record is the log: no Trainer checkpoints kept
        training = TrainingArguments(
            output_dir=scratch,
            learning_rate=args.lr,
            warmup_steps=args.warmup,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=32,
            per_device_eval_batch_size=256,
            eval_strategy="epoch",
            logging_strategy="epoch",
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=0,
            disable_tqdm=args.quiet,
        )
        trainer = Trainer(tiny_bert(), training, train_dataset=train, eval_dataset=val, compute_metrics=accuracy, callbacks=[babysit])
        trainer.train()  # ends with the findings and "report: runs/<name>/report.html"
    return str(babysit.run.path)


if __name__ == "__main__":
    main()
