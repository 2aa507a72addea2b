"""frequency_widths and frequency_mask: widths against a hand-worked case, the budget and its
edges, the nested mask, a MaskedEmbedding trained through fit on it, bad input."""

import numpy as np
import pytest

import tf_freqsgd
import tensorflow as tf

from tf_freqsgd.layers import MaskedEmbedding, frequency_mask, frequency_widths

COUNTS = np.array([100, 25, 4, 1, 0])  # square roots 10, 5, 2, 1, 0


def test_widths_take_the_largest_scale_within_the_budget():
    # Budget 0.5 · 5 · 10 = 25 entries. Scale 1.8: round(18, 9, 3.6, 1.8) capped at 10 = 10, 9, 4, 2 (25);
    # every scale from 1.9 on gives the second row 10 (26 entries).
    np.testing.assert_array_equal(frequency_widths(COUNTS, 10, 0.5), [10, 9, 4, 2, 0])
    # Exponent 1: weights 100, 25, 4, 1. Scales up to 1.25 (exclusive) keep the last row at 1; the third row
    # reaches 4 from 0.875 (25 entries); 1.25 gives it 5 (26).
    np.testing.assert_array_equal(frequency_widths(COUNTS, 10, 0.5, exponent=1.0), [10, 10, 4, 1, 0])


def test_widths_grow_with_the_count_and_respect_the_budget():
    counts = np.random.default_rng(0).zipf(1.5, size=500).astype(float)
    for sparsity in (0.0, 0.5, 0.8, 0.9, 0.99):
        for exponent in (0.0, 0.5, 1.0):
            widths = frequency_widths(counts, 32, sparsity, exponent)
            assert widths.sum() <= (1 - sparsity) * counts.size * 32
            order = np.argsort(counts, kind="stable")
            assert np.all(np.diff(widths[order]) >= 0)
            assert widths.min() >= 0 and widths.max() <= 32


def test_no_sparsity_keeps_every_seen_row_whole_and_exponent_zero_makes_widths_equal():
    np.testing.assert_array_equal(frequency_widths(COUNTS, 10, 0.0), [10, 10, 10, 10, 0])
    np.testing.assert_array_equal(frequency_widths(COUNTS, 10, 0.5, exponent=0.0), [6, 6, 6, 6, 0])
    np.testing.assert_array_equal(frequency_widths(np.zeros(3), 4, 0.5), [0, 0, 0])


def test_the_mask_keeps_each_rows_first_columns():
    mask = frequency_mask(COUNTS, 10, 0.5)
    assert mask.dtype == bool and mask.shape == (5, 10)
    for row, width in zip(mask, [10, 9, 4, 2, 0]):
        assert row[:width].all() and not row[width:].any()
    assert 1 - mask.mean() >= 0.5


def test_a_frequency_masked_table_trains_through_fit_with_its_pruned_entries_at_zero():
    counts = np.array([50, 20, 5, 1, 0, 0, 3, 8, 2, 1])
    mask = frequency_mask(counts, 4, 0.6)
    layer = MaskedEmbedding.from_mask(mask, name="masked")
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1)(tf.keras.layers.Flatten()(layer(ids))))
    model.compile(tf_freqsgd.CounterSGD(0.5), "mse")
    batch = np.array([[0, 1, 2], [3, 6, 7], [0, 8, 9]], np.int64)
    before = layer.pruned_table()
    model.fit(batch, np.ones((3, 1)), epochs=3, batch_size=3, verbose=0)
    after = layer.pruned_table()
    assert np.all(after[~mask] == 0) and np.any(after[mask] != before[mask])
    assert layer.inference_parameter_count() == mask.sum()


@pytest.mark.parametrize("arguments, message", [
    ((np.array([1.0, -1.0]), 4, 0.5), "`counts` must be finite and non-negative"),
    ((np.array([1.0, np.nan]), 4, 0.5), "`counts` must be finite and non-negative"),
    ((np.ones((2, 2)), 4, 0.5), r"`counts` must be a non-empty vector .* got shape \(2, 2\)"),
    ((np.array([]), 4, 0.5), r"`counts` must be a non-empty vector .* got shape \(0,\)"),
    ((COUNTS, 0, 0.5), "`output_dim` must be a positive integer; got 0"),
    ((COUNTS, 4.0, 0.5), "`output_dim` must be a positive integer; got 4.0"),
    ((COUNTS, 4, 1.0), r"`sparsity` must be a number in \[0, 1\); got 1.0"),
    ((COUNTS, 4, -0.1), r"`sparsity` must be a number in \[0, 1\); got -0.1"),
    ((COUNTS, 4, True), r"`sparsity` must be a number in \[0, 1\); got True"),
    ((COUNTS, 4, 0.5, -1.0), "`exponent` must be a finite number >= 0; got -1.0"),
    ((COUNTS, 4, 0.5, float("inf")), "`exponent` must be a finite number >= 0; got inf"),
])
def test_bad_input_is_named(arguments, message):
    for function in (frequency_widths, frequency_mask):
        with pytest.raises(ValueError, match=message):
            function(*arguments)
