"""``row_storage``'s multi-state TFRA table bound to a batch: one lookup, one upsert, columns exact."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tf_freqsgd.optimizers import row_storage

de = pytest.importorskip("tensorflow_recommenders_addons.dynamic_embedding")
_names = itertools.count()


@pytest.fixture
def table():
    """Two states a row, as RowwiseAdagradCounter keeps them: an int32 count code and a float32 accumulator."""
    table = de.Variable(key_dtype=tf.int64, value_dtype=tf.float64, dim=2, name=f"row_storage_{next(_names)}",
                        initializer=tf.constant([0.0, 0.25], tf.float64))
    table.upsert(tf.constant([10, 20], tf.int64), tf.constant([[3.0, 1.5], [2**31 - 1, 0.5]], tf.float64))
    return table


def bound(table, keys):
    rows = row_storage.BatchRows(table, tf.constant(keys, tf.int64))
    return rows, row_storage.BatchColumn(rows, row_storage.StateColumn(table, 0, tf.int32)), \
        row_storage.BatchColumn(rows, row_storage.StateColumn(table, 1, tf.float32))


def test_columns_read_their_dtype_exactly_and_unseen_ids_their_initial_value(table):
    _, counter, accumulator = bound(table, [20, 30, 10])
    rows = tf.constant([0, 1, 2], tf.int64)
    np.testing.assert_array_equal(counter.gather(rows), np.array([2**31 - 1, 0, 3], np.int32))
    np.testing.assert_array_equal(accumulator.gather(rows), np.array([0.5, 0.25, 1.5], np.float32))


def test_write_back_upserts_the_written_rows_once_and_keeps_unwritten_columns(table):
    rows, counter, _ = bound(table, [20, 30, 10])
    written = tf.constant([1, 2], tf.int64)
    counter.scatter_update(tf.IndexedSlices(tf.constant([-5, 7], tf.int32), written))
    # A read after the write sees it.
    np.testing.assert_array_equal(counter.gather(tf.constant([0, 1, 2], tf.int64)), [2**31 - 1, -5, 7])
    rows.write_back()
    keys, values = table.export()
    by_key = dict(zip(keys.numpy(), values.numpy().tolist()))
    assert by_key == {10: [7.0, 1.5], 20: [2**31 - 1, 0.5], 30: [-5.0, 0.25]}


def test_states_written_at_other_rows_are_refused(table):
    _, counter, accumulator = bound(table, [20, 30])
    counter.scatter_update(tf.IndexedSlices(tf.constant([1], tf.int32), tf.constant([0], tf.int64)))
    with pytest.raises(ValueError, match="same local rows"):
        accumulator.scatter_update(tf.IndexedSlices(tf.constant([1.0]), tf.constant([1], tf.int64)))


def test_state_column_reads_one_state_of_the_table(table):
    column = row_storage.StateColumn(table, 1, tf.float32)
    np.testing.assert_array_equal(column.lookup(tf.constant([10, 99], tf.int64)), [[1.5], [0.25]])
    keys, values = column.export()
    assert values.dtype == tf.float32 and sorted(zip(keys.numpy(), values.numpy()[:, 0])) == [(10, 1.5), (20, 0.5)]
    assert int(column.size()) == 2 and row_storage.is_table(column)
