"""Optimizer-state bytes, measured from the variables."""

import pytest
import tensorflow as tf

import tf_freqsgd

ROWS, DIM = 1000, 16


def built(optimizer):
    table = tf.Variable(tf.zeros([ROWS, DIM]), name="table")
    gradient = tf.IndexedSlices(tf.ones([1, DIM]), tf.constant([3]), tf.constant([ROWS, DIM]))
    optimizer.apply_gradients([(gradient, table)])
    return optimizer


@pytest.mark.parametrize(
    "make,bytes_per_row",
    [
        (lambda: tf_freqsgd.CounterSGD(), 4),
        (lambda: tf_freqsgd.CounterSGD(counter_halflife=100.0), 8),
        (lambda: tf_freqsgd.RowwiseAdagradCounter(), 8),
        (lambda: tf_freqsgd.CounterSGD(momentum=0.9), 4 + 4 * DIM),
        (lambda: tf.keras.optimizers.Adagrad(), 4 * DIM),
        (lambda: tf.keras.optimizers.legacy.Adam(), 8 * DIM),
    ],
)
def test_per_table_state_bytes(make, bytes_per_row):
    assert tf_freqsgd.optimizer_state_bytes(built(make()), rows=ROWS) == bytes_per_row * ROWS


def test_total_includes_the_step_counters():
    optimizer = built(tf_freqsgd.CounterSGD())
    # iterations and applied_steps, an int64 each
    assert tf_freqsgd.optimizer_state_bytes(optimizer) == 4 * ROWS + 16
