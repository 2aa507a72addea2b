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


def test_the_targets_are_checked_on_pep_and_frequency_tickets(embedding_size):
    if not embedding_size.FLAGS.is_parsed():
        embedding_size.FLAGS.mark_as_parsed()
    full = 0.858
    tickets = {"0.8": run(0.8565, 9, sparsity=0.8), "0.9": run(0.8540, 9, sparsity=0.9)}
    result = {"plain": {32: run(full, 9)}, "mlet": {4: run(0.850, 3), 8: run(0.859, 3)},
              "pep": {"retrained": {"0.8": run(0.842, 5, sparsity=0.8003)}, "frequency": tickets}}
    checks = embedding_size.target_checks("ctr", {"counter_sgd": result})["counter_sgd"]
    assert checks["mlet_matches_plain_d32_at"] == 8
    assert checks["pep_auc_drop_at_80_percent"] == pytest.approx(0.016) and not checks["pep_80_percent_met"]
    assert checks["pep_auc_drop_at_90_percent"] is None and not checks["pep_90_percent_met"]
    # The 90 % ticket counts at 80 % too: the best ticket at least that sparse is the one checked.
    assert checks["frequency_ticket_auc_drop_at_80_percent"] == pytest.approx(0.0015)
    assert checks["frequency_ticket_80_percent_met"]
    assert checks["frequency_ticket_auc_drop_at_90_percent"] == pytest.approx(0.004)
    assert checks["frequency_ticket_90_percent_met"]


def test_rewind_tables_keep_the_tables_after_the_rewind_epoch_across_fit_calls(embedding_size):
    import numpy as np
    import tensorflow as tf

    ids = tf.keras.Input(shape=(), dtype=tf.int64)
    table = tf.keras.layers.Embedding(4, 2, name="user")
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1)(table(ids)))
    model.compile(tf.keras.optimizers.legacy.SGD(0.5), "mse")
    rewind, at_start = embedding_size.RewindTables(("user",), 1), embedding_size.RewindTables(("user",), 0)
    initial = table.embeddings.numpy()  # built with the model
    for epoch in range(3):
        model.fit(np.arange(4), np.ones(4), epochs=1, verbose=0, callbacks=[rewind, at_start])
        if epoch == 0:
            after_one = table.embeddings.numpy()
    np.testing.assert_array_equal(rewind.tables["user"], after_one)
    np.testing.assert_array_equal(at_start.tables["user"], initial)
    assert not np.array_equal(table.embeddings.numpy(), after_one)
