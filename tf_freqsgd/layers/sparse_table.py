"""``SparseTableEmbedding``: a pruned table served from its non-zero entries only.

A PEP table at sparsity ``p`` keeps ``(1 − p) · n · d`` entries; served dense it still costs
``4 · n · d`` bytes. This layer holds it in compressed sparse row form: each row's non-zero
``values`` and their ``columns``, and ``row_splits`` (row ``i``'s entries are
``values[row_splits[i]:row_splits[i + 1]]``), so it costs ``(4 + column bytes) · nnz`` plus
``n + 1`` offsets. A lookup gathers the ids' entries and scatters them into zero rows of width
``d``: its outputs equal the dense table's, with stock TensorFlow ops only.
"""

import numpy as np
import tensorflow as tf


def _smallest_int_dtype(largest):
    """The narrowest signed integer type (16 or 32 bits) holding ``largest``: it sets the bytes per entry."""
    return tf.int16 if largest <= np.iinfo(np.int16).max else tf.int32


class SparseTableEmbedding(tf.keras.layers.Layer):
    """Lookup in a frozen ``n × d`` table stored as its non-zero entries (CSR).

    Build it with ``from_table(table)``. Input: integer ids in ``[0, n)``, any shape; output:
    ``ids.shape + [d]``, the table's rows (zeros where the table is zero).
    """

    def __init__(self, row_splits, columns, values, output_dim, **kwargs):
        """``row_splits`` (``n + 1``, non-decreasing from 0), ``columns`` and ``values`` (one per stored
        entry): the table's CSR form; ``output_dim``: the width ``d``."""
        super().__init__(trainable=False, **kwargs)
        row_splits, columns, values = np.asarray(row_splits), np.asarray(columns), np.asarray(values)
        if row_splits.ndim != 1 or len(row_splits) < 2 or row_splits[0] != 0 or np.any(np.diff(row_splits) < 0):
            raise ValueError(f"SparseTableEmbedding {self.name!r}: `row_splits` must be a non-decreasing vector "
                             "of at least 2 offsets starting at 0.")
        if columns.shape != values.shape or columns.shape != (row_splits[-1],):
            raise ValueError(f"SparseTableEmbedding {self.name!r}: `columns` {columns.shape} and `values` "
                             f"{values.shape} must both hold row_splits[-1] = {row_splits[-1]} entries.")
        if len(columns) and not 0 <= columns.min() <= columns.max() < output_dim:
            raise ValueError(f"SparseTableEmbedding {self.name!r}: `columns` must lie in [0, {output_dim}).")
        self.input_dim, self.output_dim = len(row_splits) - 1, int(output_dim)
        self.row_splits = self._frozen_weight("row_splits", row_splits, _smallest_int_dtype(row_splits[-1]))
        self.columns = self._frozen_weight("columns", columns, _smallest_int_dtype(output_dim - 1))
        self.values = self._frozen_weight("values", values, self.dtype)

    @classmethod
    def from_table(cls, table, **kwargs):
        """The layer holding the non-zero entries of ``table`` (an ``n × d`` array)."""
        table = np.asarray(table)
        if table.ndim != 2:
            raise ValueError(f"SparseTableEmbedding.from_table: `table` must be a matrix; got shape {table.shape}.")
        rows, columns = np.nonzero(table)  # row-major order: each row's entries are contiguous
        row_splits = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=table.shape[0]))])
        return cls(row_splits, columns, table[rows, columns], table.shape[1], **kwargs)

    def _frozen_weight(self, name, value, dtype):
        return self.add_weight(name=name, shape=value.shape, dtype=dtype, trainable=False,
                               initializer=tf.keras.initializers.Constant(value))

    def call(self, ids):
        flat_ids = tf.reshape(tf.cast(ids, tf.int64), [-1])
        row_splits = tf.cast(self.row_splits, tf.int64)
        # The stored positions of each id's entries, then (position in the batch, column) for each.
        positions = tf.ragged.range(tf.gather(row_splits, flat_ids), tf.gather(row_splits, flat_ids + 1))
        where = tf.stack([positions.value_rowids(), tf.gather(tf.cast(self.columns, tf.int64), positions.flat_values)],
                         axis=1)
        rows = tf.scatter_nd(where, tf.gather(self.values, positions.flat_values),
                             tf.stack([tf.size(flat_ids, out_type=tf.int64), self.output_dim]))
        return tf.reshape(rows, tf.concat([tf.shape(ids), [self.output_dim]], axis=0))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.output_dim])

    def stored_bytes(self):
        """The bytes of the stored arrays (offsets, columns and values)."""
        weights = (self.row_splits, self.columns, self.values)
        return sum(int(np.prod(weight.shape)) * tf.as_dtype(weight.dtype).size for weight in weights)
