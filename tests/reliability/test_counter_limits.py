"""Counters stay exact to 2**31 and never freeze beyond; step numbers never wrap: the state is set
near each boundary and stepped, on the fused op and on the pure-TF path."""

import math

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from tf_freqsgd.optimizers.counter import decode_counts_numpy, encode_counts_numpy, log_counts_numpy

ROWS, DIM = 1000, 2


def table():
    return tf.Variable(np.zeros((ROWS, DIM), np.float32), name="table")


def gradient(ids, value=1.0):
    ids = np.asarray(ids, np.int64)
    return tf.IndexedSlices(tf.fill([len(ids), DIM], value), tf.constant(ids), tf.constant([ROWS, DIM], tf.int64))


def start(optimizer, variable, counts, steps=0, seen_at=None):
    """Builds ``optimizer`` and sets its state: every row's count, as seen at step ``seen_at`` (with a
    half-life), and the steps applied."""
    optimizer.build([variable])
    state = optimizer.row_state(variable)
    counts = np.broadcast_to(np.asarray(counts, np.float64), (ROWS,))
    halflife = optimizer.counter_spec.halflife
    state["counter"].assign(log_counts_numpy(counts, seen_at, halflife) if halflife else encode_counts_numpy(counts))
    optimizer.applied_steps.assign(steps)
    return state


def test_counts_are_exact_up_to_and_at_2_31(sparse_apply_path):
    optimizer = tf_freqsgd.CounterSGD(0.1)
    variable = table()
    state = start(optimizer, variable, 2**31 - 4)
    for expected in (2**31 - 2, 2**31):
        optimizer.apply_gradients([(gradient([7, 7]), variable)])  # two occurrences a step
        assert optimizer.counts(variable).numpy()[7] == expected
    assert state["counter"].dtype == tf.int32
    assert state["counter"].numpy()[7] < 0  # 2**31 is held as float32 bits


def test_a_hot_id_counts_exactly_past_2_24():
    """A float32 counter stopped counting 655 occurrences a step after ~25,000 steps."""
    optimizer = tf_freqsgd.CounterSGD(0.1)
    variable = table()
    start(optimizer, variable, counts=2**24)
    for _ in range(10):
        optimizer.apply_gradients([(gradient([3] * 655), variable)])
    assert optimizer.counts(variable).numpy()[3] == 2**24 + 6550


def test_counts_past_2_31_keep_growing_without_bias(sparse_apply_path):
    """Past 2**31 a count is a float32 (gap 256 there); increments of 1 are rounded up or down
    without bias, so 256 steps add 256 on average instead of freezing."""
    optimizer = tf_freqsgd.CounterSGD(0.1, counting="presence")
    variable = table()
    start(optimizer, variable, counts=2**31)
    every_row = np.arange(ROWS)
    for _ in range(256):
        optimizer.apply_gradients([(gradient(every_row), variable)])
    added = optimizer.counts(variable).numpy() - 2**31
    np.testing.assert_array_equal(added % 256, 0)
    # Each row adds 256 * Binomial(256, 1/256): mean 256, standard deviation ~256, so the mean of
    # 1000 rows is 256 +- 8.
    assert abs(added.mean() - 256) < 40


def test_both_paths_round_counts_identically(monkeypatch):
    results = []
    for path in ("tf", "custom"):
        monkeypatch.setenv("TF_FREQSGD_OPS", path)
        optimizer = tf_freqsgd.CounterSGD(0.1)
        variable = table()
        state = start(optimizer, variable, counts=2**31 - 40, steps=10)
        rng = np.random.default_rng(0)
        for _ in range(20):
            optimizer.apply_gradients([(gradient(rng.integers(0, 50, 200)), variable)])
        results.append((state["counter"].numpy(), variable.numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)


def test_the_frequency_estimate_holds_at_step_2_40(sparse_apply_path):
    """A row present at every one of 2**40 steps has count 2**40 and frequency 1: scale 1."""
    optimizer = tf_freqsgd.CounterSGD(0.5, counting="presence")
    variable = table()
    start(optimizer, variable, counts=2**40 - 1, steps=2**40 - 1)
    optimizer.apply_gradients([(gradient([4]), variable)])
    assert optimizer.counts(variable).numpy()[4] == 2**40
    np.testing.assert_array_equal(variable.numpy()[4], [-0.5, -0.5])
    assert int(optimizer.applied_steps) == 2**40


@pytest.mark.parametrize("class_name", ["CounterSGD", "RowwiseAdagradCounter"])
@pytest.mark.parametrize("last_step", [2**31 - 2, 2**32 - 2, 2**40 - 2], ids=["int32", "uint32", "2^40"])
def test_decay_is_right_at_any_step_number(class_name, last_step, sparse_apply_path):
    """With a half-life, a row last seen 2 steps ago keeps 2**(-2/h) of its count, at step numbers
    past every 32-bit wrap and at 2**40. The stored log-count grows with t/h: its precision is
    relative, ~3e-16 * t/h."""
    halflife = 1000.0
    optimizer = getattr(tf_freqsgd, class_name)(0.1, counter_halflife=halflife)
    variable = table()
    start(optimizer, variable, counts=4.0, steps=last_step, seen_at=last_step - 1)
    optimizer.apply_gradients([(gradient([9]), variable)])
    np.testing.assert_allclose(optimizer.counts(variable).numpy()[[9, 10]],
                               [1.0 + 4.0 * 2.0 ** (-2 / halflife), 4.0 * 2.0 ** (-2 / halflife)],
                               rtol=1e-15 * last_step / halflife + 1e-12)


def test_half_life_state_is_8_bytes_a_row_with_no_step_to_wrap():
    optimizer = tf_freqsgd.CounterSGD(0.1, counter_halflife=100.0)
    variable = table()
    optimizer.build([variable])
    assert [(name, state.dtype) for name, state in optimizer.row_state(variable).items()] == [("counter", tf.float64)]
    assert tf_freqsgd.optimizer_state_bytes(optimizer, rows=ROWS) == 8 * ROWS


def test_decayed_counts_keep_every_increment_at_2_31(sparse_apply_path):
    """The longest half-life lets a decayed count reach 2**31 and beyond; each +1 is kept."""
    halflife = 2.0**32
    optimizer = tf_freqsgd.CounterSGD(0.1, counter_halflife=halflife, counting="presence")
    variable = table()
    start(optimizer, variable, counts=2.0**31, steps=5, seen_at=5)
    expected = 2.0**31
    for _ in range(3):
        optimizer.apply_gradients([(gradient([2]), variable)])
        expected = 1.0 + math.exp(-math.log(2.0) / halflife) * expected
    assert optimizer.counts(variable).numpy()[2] == pytest.approx(expected, abs=1e-4)
    assert expected - 2.0**31 > 1.9  # each step's +1 counted (less 0.35 of decay)


def test_counter_codes_round_trip_in_numpy():
    exact = np.array([0, 1, 2**24 + 1, 2**31 - 1, 2**31, 2**40])
    np.testing.assert_array_equal(decode_counts_numpy(encode_counts_numpy(exact)), exact)
    assert decode_counts_numpy(encode_counts_numpy([3e38]))[0] == np.float32(3e38)
    assert encode_counts_numpy([2**31 - 1])[0] == 2**31 - 1
