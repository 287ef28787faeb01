"""The lab: each lecture experiment reproduced from code, with the numbers behind its figure.

Contract: an experiment is a function registered in `EXPERIMENTS`,

    @EXPERIMENTS.register("init")
    def init_experiment(layers: int = 10, units: int = 500, ...) -> LabResult:
        \"\"\"One-line description shown by `babysit lab`.\"\"\"

taking only keyword options with defaults (the CLI's `--option value` flags) and
returning a `LabResult`: tables of numbers, figures, and the lecture's claims
checked against the measured numbers. `run_experiment` runs one and writes its
PNGs, `results.json` and `index.html` under `runs/lab/<name>/`.
"""

from babysit.lab.result import EXPERIMENTS, Claim, LabResult, run_experiment

# Importing the experiment modules registers them.
from babysit.lab import activations, batchnorm, initialization, lr, optimizers, regularization, search, transfer  # noqa: E402,F401  isort: skip

__all__ = ["EXPERIMENTS", "Claim", "LabResult", "run_experiment"]
