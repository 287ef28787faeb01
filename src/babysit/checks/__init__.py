"""Preflight checks: the lectures' sanity checks before training (`check(model, data)`)."""
