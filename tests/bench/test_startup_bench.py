"""The start-up benchmark in a reduced form (the full run is `python bench/bench_startup.py`).

No timing is asserted (the machine's load decides those); what holds on any machine
is which heavy modules a fresh interpreter has loaded after each use of babysit.
"""

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
bench = importlib.import_module("bench_startup")


def test_import_babysit_loads_none_of_the_heavy_modules():
    assert bench.loaded("import babysit") == []
    # Listing every block and registry, or reaching the workflows, still needs none of them.
    assert bench.loaded("import babysit as bs; bs.blocks.REGISTRIES; bs.tune.log_uniform(1e-3, 1); bs.doctor; bs.check; bs.config") == []


def test_search_and_the_report_page_load_theirs_on_first_use(tmp_path):
    assert "optuna" in bench.loaded("import babysit as bs; bs.search")
    # One run of the timed loop writes a run record to draw.
    timed = bench.record_cost(str(tmp_path))
    assert timed["plain"] > 0 and timed["recorded"] > 0 and isinstance(timed["findings"], list)
    (run,) = tmp_path.iterdir()
    report = f"import babysit as bs; report = bs.run_report({str(run)!r})"
    assert bench.loaded(f"{report}; report.print()") == []  # reading and printing draw nothing
    assert "matplotlib" in bench.loaded(f"{report}; report.write()")
    assert (run / "report.html").is_file()


def test_the_import_clock_times_fresh_interpreters():
    times = bench.import_times(1)
    assert sorted(times) == ["babysit", "babysit_inside", "torch", "torch_inside"]
    assert all(len(v) == 1 and v[0] > 0 for v in times.values())
