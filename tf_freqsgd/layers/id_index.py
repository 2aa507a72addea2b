"""Raw ids to row indices inside a served graph, with stock TensorFlow ops only.

A model trains on contiguous row indices; its clients ask with the data set's own ids (MovieLens'
user and movie ids). ``IdIndex`` holds that mapping in the graph (a sorted search) and says which
ids it does not know; ``FallbackForUnknown`` gives the examples of unknown ids a fixed answer. An
exported model then answers every id, flags the ones it did not know, and needs nothing beside it
to translate ids. ``StaticEmbedding`` looks its keys up by the same search.
"""

import numpy as np
import tensorflow as tf

# Larger than or equal to every int64 id: appended to the sorted ids, it keeps them sorted and
# gives searchsorted a position to return past the last id, even when there are no ids.
_SENTINEL_ID = np.iinfo(np.int64).max


def sorted_with_sentinel(ids, owner):
    """``(order, sorted ids with the sentinel appended)`` of distinct int64 ``ids``; ``owner``
    names the layer in the error for repeated ids."""
    ids = np.asarray(ids, np.int64)
    order = np.argsort(ids, kind="stable")
    if np.any(np.diff(ids[order]) == 0):
        raise ValueError(f"{owner}: the ids must be distinct.")
    return order, np.append(ids[order], _SENTINEL_ID)


def search_sorted(sorted_ids, ids):
    """``(positions, found)`` of ``ids`` (any integer dtype and shape) in ``sorted_with_sentinel``'s
    array: where an id is absent, ``found`` is False and its position is that of some other entry,
    the sentinel's included."""
    ids = tf.cast(ids, tf.int64)
    flat_ids = tf.reshape(ids, [-1])
    positions = tf.searchsorted(sorted_ids, flat_ids, side="left", out_type=tf.int64)
    # The sentinel equals an id of int64's maximum, which is not one of the ids unless listed before it.
    found = tf.logical_and(tf.equal(tf.gather(sorted_ids, positions), flat_ids),
                           positions < tf.size(sorted_ids, out_type=tf.int64) - 1)
    return tf.reshape(positions, tf.shape(ids)), tf.reshape(found, tf.shape(ids))


class IdIndex(tf.keras.layers.Layer):
    """``ids[j] -> indices[j]``: raw ids to the rows a model was trained on, with stock ops.

    Called on ids of any integer dtype and shape, returns ``(index, unknown)`` of that shape:
    int64 indices, and True where an id is not one of ``ids``. An unknown id gets index 0, a row
    any table of the model has, so the lookups after this one run on the whole batch; the caller
    replaces their result (``FallbackForUnknown``).

    Args:
      ids: distinct integer raw ids.
      indices: the row of each of ``ids`` (default: ``0, 1, ...``, the position in ``ids``).
    """

    def __init__(self, ids, indices=None, **kwargs):
        super().__init__(trainable=False, **kwargs)
        ids = np.asarray(ids, np.int64)
        indices = np.arange(len(ids), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        if ids.ndim != 1 or indices.shape != ids.shape:
            raise ValueError(f"IdIndex {self.name!r}: ids and indices must be vectors of one length; got shapes "
                             f"{ids.shape} and {indices.shape}.")
        order, sorted_ids = sorted_with_sentinel(ids, f"IdIndex {self.name!r}")
        self.sorted_ids = self._constant("sorted_ids", sorted_ids)
        self.indices = self._constant("indices", np.append(indices[order], 0))

    def _constant(self, name, value):
        return self.add_weight(name=name, shape=value.shape, dtype=tf.int64, trainable=False,
                               initializer=tf.keras.initializers.Constant(value))

    def call(self, ids):
        positions, found = search_sorted(self.sorted_ids, ids)
        index = tf.where(found, tf.gather(self.indices, positions), tf.zeros_like(positions))
        return index, tf.logical_not(found)


class FallbackForUnknown(tf.keras.layers.Layer):
    """``values`` for each example whose ids are known, ``fallback`` for the others.

    Called on ``[values, unknown, ...]``: ``values`` of shape ``[batch, ...]``, then one or more
    bool ``[batch]`` flags (``IdIndex``'s); an example flagged by any of them gets ``fallback``
    (cast to ``values``' dtype, broadcast to one example's shape ``values.shape[1:]``).
    """

    def __init__(self, fallback, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.fallback = np.asarray(fallback)

    def call(self, inputs):
        values, *flags = inputs
        unknown = tf.reduce_any(tf.stack(flags), axis=0)
        # [batch] -> [batch, 1, ...]: one flag per example, broadcast over its values.
        unknown = tf.reshape(unknown, tf.concat([tf.shape(unknown), tf.ones([len(values.shape) - 1], tf.int32)], 0))
        return tf.where(unknown, tf.constant(self.fallback, values.dtype), values)
