"""The documented `bs.check` example runs and reports a healthy model."""

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "check_model.py"


def test_check_example_runs(capsys):
    runpy.run_path(str(EXAMPLE))
    out = capsys.readouterr().out
    assert "status: pass" in out and "suggested learning rate" in out and "lr_range" in out
