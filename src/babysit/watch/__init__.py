"""Watching a network while it trains: per-layer probes through PyTorch hooks."""
