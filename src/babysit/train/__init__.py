"""The training loop, its callbacks and the per-epoch history."""
