"""Data: built-in data sets, preprocessing fitted on train only, in-memory batching."""
