"""Diagnosis: findings with evidence, and the rules that read a run's curves and probes."""
