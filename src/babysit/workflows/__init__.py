"""Workflows: the procedures that compose data, training, checks, search and reports.

They sit above every other layer (nothing below imports them): `run` trains what a
config describes, `start_run`/`resume_run` do it with a run record, and `doctor`
checks, trains briefly with probes and reports.
"""

from babysit.build import Run, run
from babysit.workflows.doctor import DoctorResult, doctor
from babysit.workflows.recorded import resume_run, start_run

__all__ = ["DoctorResult", "Run", "doctor", "resume_run", "run", "start_run"]
