"""``StaticEmbedding``: a frozen id -> row table looked up with stock TensorFlow ops only, the
serving form of a TFRA dynamic table (``tf_freqsgd.export``) and of a collapsed dynamic MLET table."""

import numpy as np
import tensorflow as tf

from tf_freqsgd.layers.id_index import search_sorted, sorted_with_sentinel


class StaticEmbedding(tf.keras.layers.Layer):
    """Embedding lookup in a frozen copy of a dynamic table, with stock TensorFlow ops only.

    Ids present in ``keys`` return their row; any other id returns ``default_row``. Ids of any
    integer dtype are accepted and widened to int64, so a serving signature may take int32 ids.
    The output has shape ``ids.shape + [embedding_size]``, as ``de.keras.layers.Embedding``'s.
    """

    def __init__(self, keys, rows, default_row, **kwargs):
        """``keys``: distinct integer ids, any order; ``rows[i]``: the embedding of ``keys[i]``;
        ``default_row``: the embedding of every other id."""
        super().__init__(trainable=False, **kwargs)
        order, sorted_keys = sorted_with_sentinel(keys, f"StaticEmbedding {self.name!r}")
        # The default row sits at the sentinel's position: a missed id has a row to point at even
        # when the table is empty.
        self.keys = self._frozen_weight("keys", sorted_keys, tf.int64)
        self.rows = self._frozen_weight("rows", np.vstack([np.asarray(rows)[order], default_row]), self.dtype)
        self._default_position = len(order)

    def _frozen_weight(self, name, value, dtype):
        return self.add_weight(name=name, shape=value.shape, dtype=dtype, trainable=False,
                               initializer=tf.keras.initializers.Constant(value))

    def call(self, ids):
        positions, found = search_sorted(self.keys, ids)
        return tf.gather(self.rows, tf.where(found, positions, tf.constant(self._default_position, tf.int64)))
