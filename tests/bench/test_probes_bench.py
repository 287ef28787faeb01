"""The probe-overhead benchmark's statistics and one short race of each kind (the full run is `python bench/bench_probes.py`)."""

import argparse
import importlib
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
bench = importlib.import_module("bench_probes")


def test_a_drift_cancels_out_of_each_pair_ratio():
    # The machine slows down steadily: every epoch takes longer than the one before, on both sides.
    plain = [1.0, 2.0, 3.0, 4.0, 5.0]
    variant = [1.4 * (p + q) / 2 for p, q in zip(plain, plain[1:])]
    assert bench.pair_ratios(plain, variant) == pytest.approx([1.4] * 4)


def test_a_burst_on_one_side_of_a_pair_does_not_move_the_verdict():
    ratios = [1.30, 1.31, 1.29, 1.30, 1.32, 1.28, 1.30, 1.31, 1.29, 1.30, 2.6, 0.65]  # one epoch of each side hit
    assert bench.interquartile_mean(ratios) == pytest.approx(1.30, abs=0.01)
    assert bench.interquartile_mean([1.0, 2.0, 3.0]) == 2.0  # too few to trim


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    # The bench's clock is the thread's CPU time, which counts torch's work only with one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data, model = bench.mnist1d()
    args = argparse.Namespace(batch_size=100)
    for variant in ("full", "own loop"):  # warm-up, as the bench does: lazy imports and first kernels
        bench.race(variant, data, model, 1, args, torch.device("cpu"), str(tmp_path_factory.mktemp("warm")))
    yield data, model, args
    torch.set_num_threads(threads)


@pytest.mark.parametrize("variant", ["full", "own loop", "full + live TB", "light, bf16"])
def test_a_race_interleaves_the_variant_between_plain_epochs(setup, variant, tmp_path):
    data, model, args = setup
    plain, other = bench.race(variant, data, model, 4, args, torch.device("cpu"), str(tmp_path))
    assert len(plain) == 5 and len(other) == 4 and min(plain + other) > 0
    if variant.startswith("full"):  # every step probed: dearer than the plain loop beside it, whatever the machine's noise
        assert bench.interquartile_mean(bench.pair_ratios(plain, other)) > 1.05
    elif variant == "own loop":  # the recorded loop wrote its run record
        assert any(tmp_path.rglob("*.jsonl"))
