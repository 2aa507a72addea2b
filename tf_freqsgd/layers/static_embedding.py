"""``StaticEmbedding``: a frozen id -> row table looked up with stock TensorFlow ops only, the
serving form of a TFRA dynamic table (``tf_freqsgd.export``) and of a collapsed dynamic MLET table."""

import numpy as np
import tensorflow as tf

# Larger than or equal to every int64 id, so it keeps the key array sorted.
_SENTINEL_KEY = np.iinfo(np.int64).max


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
        keys = np.asarray(keys, dtype=np.int64)
        rows = np.asarray(rows)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        if np.any(sorted_keys[1:] == sorted_keys[:-1]):
            raise ValueError(f"StaticEmbedding {self.name!r}: keys must be distinct.")
        # The sentinel sits last, with the default row at the same position: searchsorted then
        # never returns past the end, and a missed id has a row to point at even when the table
        # is empty.
        self.keys = self._frozen_weight("keys", np.append(sorted_keys, _SENTINEL_KEY), tf.int64)
        self.rows = self._frozen_weight("rows", np.vstack([rows[order], default_row]), self.dtype)
        self._default_position = len(keys)

    def _frozen_weight(self, name, value, dtype):
        return self.add_weight(name=name, shape=value.shape, dtype=dtype, trainable=False,
                               initializer=tf.keras.initializers.Constant(value))

    def call(self, ids):
        ids = tf.cast(ids, tf.int64)
        flat_ids = tf.reshape(ids, [-1])
        positions = tf.searchsorted(self.keys, flat_ids, side="left", out_type=tf.int64)
        found = tf.equal(tf.gather(self.keys, positions), flat_ids)
        positions = tf.where(found, positions, tf.constant(self._default_position, tf.int64))
        return tf.gather(self.rows, tf.reshape(positions, tf.shape(ids)))
