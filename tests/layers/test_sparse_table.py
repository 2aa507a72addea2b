"""SparseTableEmbedding: lookups equal the dense table's, the stored bytes, and bad input."""

import numpy as np
import pytest
import tensorflow as tf

from tf_freqsgd.layers import SparseTableEmbedding


def pruned_table(rows=7, width=5, density=0.3, seed=0):
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(rows, width)).astype(np.float32)
    table[rng.random((rows, width)) >= density] = 0.0
    table[3] = 0.0  # a row with no entry left
    return table


def test_lookups_equal_the_dense_table_at_any_id_shape():
    table = pruned_table()
    layer = SparseTableEmbedding.from_table(table)
    for ids in (np.array([6, 3, 0]), np.array([[0, 3], [6, 2], [3, 3]]), np.zeros((0,), np.int64)):
        np.testing.assert_array_equal(layer(tf.constant(ids, tf.int32)).numpy(), table[ids])
    assert layer.compute_output_shape((2, 3)) == (2, 3, 5)


def test_stored_bytes_count_offsets_columns_and_values():
    table = pruned_table()
    layer = SparseTableEmbedding.from_table(table)
    nonzero = np.count_nonzero(table)
    # int16 row offsets (8 of them), int16 columns and float32 values.
    assert layer.stored_bytes() == 8 * 2 + nonzero * (2 + 4)
    wide = SparseTableEmbedding(np.array([0, 1]), np.array([40000]), np.array([1.0]), 40001)
    assert wide.columns.dtype == tf.int32


@pytest.mark.parametrize("arguments, message", [
    ((np.array([1, 2]), np.array([0, 1]), np.ones(2), 3), "`row_splits` must be a non-decreasing vector"),
    ((np.array([0, 2, 1]), np.array([0]), np.ones(1), 3), "`row_splits` must be a non-decreasing vector"),
    ((np.array([0, 2]), np.array([0]), np.ones(1), 3), "must both hold row_splits"),
    ((np.array([0, 1]), np.array([3]), np.ones(1), 3), r"`columns` must lie in \[0, 3\)"),
])
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        SparseTableEmbedding(*arguments)
    with pytest.raises(ValueError, match="must be a matrix"):
        SparseTableEmbedding.from_table(np.ones(3))
