"""Optimisers, learning-rate schedules and parameter averaging."""
