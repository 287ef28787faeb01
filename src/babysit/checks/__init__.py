"""Preflight checks: the lectures' sanity checks before training (`check`)."""

from babysit.checks.base import CHECKS, CheckSettings
from babysit.checks.preflight import CheckReport, check

__all__ = ["CHECKS", "CheckReport", "CheckSettings", "check"]
