"""The report renders in headless Chromium: a screenshot of a real `babysit doctor` report shows its content.

Skipped, with the reason, when no Chromium binary is installed (Debian: `apt-get install chromium`).
The same command makes the README's screenshot:

    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \\
        --disable-background-networking --disable-component-update --disable-sync \\
        --user-data-dir=$(mktemp -d) --screenshot=out.png --window-size=1200,2000 file:///path/report.html
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

import babysit as bs
from babysit.checks.base import CheckSettings

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def screenshot(page, out, profile, height):
    """Render `page` (a file) at 1200 x `height` into the PNG `out`; the browser must not touch the network."""
    subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size=1200,{height}", page.as_uri()],
        capture_output=True, timeout=120, check=False,
    )
    return imread(str(out)) if out.is_file() else None


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium)")
def test_the_doctor_report_renders_in_headless_chromium(tmp_path):
    cfg = bs.build_config({"data": {"name": "digits"}, "model": {"name": "mlp", "activation": "tanh", "init": "normal", "init_std": 1.0},
                           "train": {"device": "cpu", "epochs": 3}})
    done = bs.doctor(cfg, runs_dir=tmp_path, name="shot", settings=CheckSettings(overfit_steps=100, sweep_steps=60, baseline_steps=60),
                     progress=False)
    top = screenshot(done.report_path, tmp_path / "top.png", tmp_path / "profile", 2000)
    assert top is not None, "chromium wrote no screenshot"
    assert top.shape[:2] == (2000, 1200)
    grey = top[..., :3].mean(axis=2)
    # Rendered, not blank: dark text and coloured figures on the white page.
    assert (grey < 0.5).mean() > 0.01 and (grey > 0.95).mean() > 0.5
    # The findings come first: the red border of the first (error) card lies in the top third.
    red = (top[..., 0] > 0.6) & (top[..., 1] < 0.15) & (top[..., 2] < 0.25)
    assert red[:700].sum() > 200
    # Every embedded image decodes: a tall screenshot of the whole page has figures all the way down.
    full = screenshot(done.report_path, tmp_path / "full.png", tmp_path / "profile2", 9000)
    rows_with_colour = np.nonzero((full[..., :3].std(axis=2) > 0.15).any(axis=1))[0]
    assert rows_with_colour.max() > 4000
