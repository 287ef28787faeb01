"""examples/watch_loop.py runs and prints per-layer statistics and update ratios."""

import re
import runpy
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "watch_loop.py"


def test_watch_loop_example_runs(capsys):
    runpy.run_path(str(EXAMPLE))
    out = capsys.readouterr().out
    stds = [float(s) for s in re.findall(r"act std ([0-9.]+)", out)]
    ratios = [float(r) for r in re.findall(r"update/weight ([0-9.e+-]+)", out)]
    assert len(stds) == 5 and all(0.2 < s < 1.5 for s in stds)  # Xavier + tanh: alive, not saturated
    assert len(ratios) == 6 and all(1e-4 < r < 1 for r in ratios)
