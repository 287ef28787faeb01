"""Hyperparameter search the lectures' way, on Optuna: log-scale random search, coarse to fine, panda and caviar.

    import babysit as bs
    result = bs.search(
        {"data": {"name": "mnist1d"}, "model": {"name": "mlp"}, "train": {"optimizer": "momentum"}},
        {"train.lr": bs.log_uniform(1e-3, 1), "train.momentum": bs.one_minus_log(0.5, 0.999)},
        bs.TuneSettings(strategy="coarse_to_fine", trials=40, epochs=2),
    )
    result.export("best.toml")   # babysit train --config best.toml

Modules: space (ranges and their transformed coordinates), search (strategies and
coarse-to-fine planning), pruning, store (the Optuna study and the claim protocol),
runner (trials, panda and caviar), results, live (the table), report (the HTML page),
session (`search`).
"""
