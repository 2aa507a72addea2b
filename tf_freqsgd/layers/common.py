"""Argument checks and the table exports shared by the embedding-size layers."""

import numbers

import numpy as np
import tensorflow as tf

from tf_freqsgd.layers.sparse_table import SparseTableEmbedding


def positive_int(layer, name, value, allow_none=False):
    """``value`` as an int, or a ValueError naming the layer and the argument."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{layer}: `{name}` must be a positive integer; got {value!r}.")
    return int(value)


def embedding_holding(table, name, dtype=None):
    """A built ``tf.keras.layers.Embedding`` whose table is ``table`` (``n × d``).

    The table is assigned after building rather than given as a ``Constant`` initializer, which
    would copy the whole array into the layer's config.
    """
    table = np.asarray(table)
    layer = tf.keras.layers.Embedding(table.shape[0], table.shape[1], name=name, dtype=dtype)
    layer.build((None,))
    layer.embeddings.assign(table)
    return layer


def smaller_serving_table(table, name, dtype=None):
    """The served form of a pruned ``table`` that stores fewer bytes: a plain ``Embedding`` holding it,
    or a ``SparseTableEmbedding`` of its non-zero entries (smaller below about 2/3 density)."""
    sparse = SparseTableEmbedding.from_table(table, name=name, dtype=dtype)
    dense_bytes = np.asarray(table).size * tf.as_dtype(sparse.values.dtype).size
    return sparse if sparse.stored_bytes() < dense_bytes else embedding_holding(table, name, dtype)
