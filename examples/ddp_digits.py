"""Data-parallel training with DistributedDataParallel: the same script on one process, N GPUs or N machines.

    python examples/ddp_digits.py                                  # one process
    torchrun --nproc_per_node=2 examples/ddp_digits.py             # two processes (gloo on CPU, nccl on GPUs)
    torchrun --nproc_per_node=2 examples/ddp_digits.py --lr 50     # too high: the diagnosis names the learning rate

Every process trains on its shard of each global batch of 100 (the result is the
one-process run's); rank 0 alone writes runs/<name>/ (the record `babysit train`
writes: metrics, probes, checkpoints) and prints the findings and the report path.
"""

from __future__ import annotations

import argparse

import torch.distributed as dist

import babysit as bs
from babysit.train import distributed


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="runs", help="the folder holding run records")
    parser.add_argument("--name", default=None, help="the run's folder name under --out")
    args = parser.parse_args(argv)

    distributed.init_from_env()  # under torchrun: join the process group (nccl with GPUs, else gloo)
    try:
        cfg = bs.build_config(
            {
                "data": {"name": "digits"},
                "model": {"name": "mlp", "hidden": [100], "activation": "relu", "init": "he"},
                "train": {"optimizer": "momentum", "lr": args.lr, "epochs": args.epochs, "batch_size": 100},
            }
        )
        run = bs.workflows.start_run(cfg, runs_dir=args.out, name=args.name, progress=distributed.is_main())
        if distributed.is_main():
            report = bs.run_report(run.record)  # what `babysit report runs/<name>` shows
            report.print()
            print(f"report: {report.write()}")
        return str(run.record)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
