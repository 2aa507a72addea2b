"""benchmarks/embedding_size.py's merge of per-seed results (serving sizes are seed 0's)."""

import importlib.util
import os
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benchmarks")


@pytest.fixture(scope="module")
def embedding_size():
    sys.path.insert(0, BENCHMARKS)  # for bench_flags, beside the script
    try:
        spec = importlib.util.spec_from_file_location("embedding_size", os.path.join(BENCHMARKS, "embedding_size.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(BENCHMARKS)


def run(test, epoch, **extra):
    return {"learning_rate": 3.0, "epoch": epoch, "validation": test, "test": test, **extra}


def test_runs_are_averaged_over_seeds_and_partial_ones_over_those_that_have_them(embedding_size):
    seeds = [
        {"plain": {32: run(0.80, 3, parameters=100, serving_bytes=400)},
         "pep": {"retrained": {"0.9": run(0.70, 2, sparsity=0.91)}}},
        {"plain": {32: run(0.84, 5, parameters=100)}, "pep": {"retrained": {}}},
        {"plain": {32: run(None, None, parameters=100)}, "pep": {"retrained": {"0.9": run(0.74, 4, sparsity=0.93)}}},
    ]
    merged = embedding_size.over_seeds(seeds)
    plain = merged["plain"][32]
    assert plain["test"] is None and plain["test_seeds"] == [0.80, 0.84, None]  # a diverged seed shows
    assert plain["epoch"] == [3, 5, None] and plain["parameters"] == 100 and plain["seeds"] == 3
    assert plain["serving_bytes"] == 400  # exported at seed 0 only
    ticket = merged["pep"]["retrained"]["0.9"]
    assert ticket["seeds"] == 2 and ticket["test"] == pytest.approx(0.72) and ticket["sparsity"] == pytest.approx(0.92)
    assert ticket["learning_rate"] == 3.0
