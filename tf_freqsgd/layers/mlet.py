r"""MLET: an embedding trained as a factorised table and served collapsed (arXiv 2309.15881).

Multi-Layer Embedding Training trains the ``n × d`` embedding of ``n`` ids as the product of an
``n × k`` table ``A`` and a ``k × d`` projection ``B`` (no bias), with ``k`` free to exceed ``d``:

.. math::  e_i = A_{i,:}\, B \in \mathbb{R}^d

The paper reports that the over-parameterised training reaches the quality of a wider embedding
at a small ``d`` (``benchmarks/embedding_size.py`` measures it on MovieLens 100K); for inference
the product is collapsed into one ``n × d`` table ``W = A B``, whose lookups equal the
layer's outputs, so the served size is ``n · d``.

A lookup gathers the batch's rows of ``A`` before projecting them, so ``A`` receives an
``IndexedSlices`` gradient: the frequency-aware optimizers count and update ``A``'s rows (one
counter per id), and a step stays O(batch). ``B`` is a small dense variable, updated as such (plain
SGD under ``CounterSGD`` / ``FrequencySGD``, at the base learning rate).

With ``dynamic_table=True``, ``A`` is a TFRA dynamic table (``de.keras.layers.Embedding`` of width
``k``, int64 ids of any value); ``collapse()`` then freezes it into a ``StaticEmbedding`` of the
projected rows, the same lookup ``tf_freqsgd.export.export_for_serving`` writes for plain dynamic
tables.
"""

import tensorflow as tf

from tf_freqsgd.layers import common
from tf_freqsgd.layers.static_embedding import StaticEmbedding

# The reference implementation draws the projection from N(0, 0.25^2).
PROJECTION_STDDEV = 0.25


@tf.keras.utils.register_keras_serializable(package="tf_freqsgd")
class MLETEmbedding(tf.keras.layers.Layer):
    r"""Embedding ``e_i = A[i] @ B`` with ``A``: ``input_dim × inner_dim``, ``B``: ``inner_dim × output_dim``.

    Args:
      input_dim: number of ids (rows of ``A``). With ``dynamic_table`` it may be None; a number
        is then the table's initial capacity.
      output_dim: width ``d`` of the served embedding.
      inner_dim: width ``k`` of the trained table; may exceed ``output_dim`` (the method's point).
      embeddings_initializer: initializer of ``A`` (Keras' ``Embedding`` default, ``"uniform"``).
      projection_initializer: initializer of ``B``; default ``RandomNormal(0, 0.25)``.
      dynamic_table: keep ``A`` in a TFRA dynamic table keyed by int64 ids.
      **kwargs: ``tf.keras.layers.Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Input: integer ids of any shape. Output: ``ids.shape + [output_dim]``.
    """

    def __init__(self, input_dim, output_dim, inner_dim, embeddings_initializer="uniform",
                 projection_initializer=None, dynamic_table=False, **kwargs):
        # As Keras' Embedding: the table is gathered in its own dtype, the output cast after.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.dynamic_table = bool(dynamic_table)
        self.input_dim = common.positive_int("MLETEmbedding", "input_dim", input_dim, allow_none=self.dynamic_table)
        self.output_dim = common.positive_int("MLETEmbedding", "output_dim", output_dim)
        self.inner_dim = common.positive_int("MLETEmbedding", "inner_dim", inner_dim)
        self.embeddings_initializer = tf.keras.initializers.get(embeddings_initializer)
        self.projection_initializer = tf.keras.initializers.get(
            projection_initializer or tf.keras.initializers.RandomNormal(stddev=PROJECTION_STDDEV))
        if self.dynamic_table:
            from tensorflow_recommenders_addons import dynamic_embedding as de

            # TFRA layers of one name share one table in a process: name it after this layer.
            self.inner_table = de.keras.layers.Embedding(
                self.inner_dim, initializer=_drawing_anew(self.embeddings_initializer), name=f"{self.name}-inner",
                init_capacity=self.input_dim or 0)

    def build(self, input_shape):
        if not self.dynamic_table:
            self.embeddings = self.add_weight(
                name="embeddings", shape=(self.input_dim, self.inner_dim),
                initializer=self.embeddings_initializer, trainable=True)
        self.projection = self.add_weight(
            name="projection", shape=(self.inner_dim, self.output_dim),
            initializer=self.projection_initializer, trainable=True)
        super().build(input_shape)

    def call(self, ids):
        if self.dynamic_table:
            rows = self.inner_table(tf.cast(ids, tf.int64))
        else:
            if ids.dtype not in (tf.int32, tf.int64):
                ids = tf.cast(ids, tf.int32)
            # Gather first: A's gradient stays IndexedSlices over the batch's rows.
            rows = tf.nn.embedding_lookup(self.embeddings, ids)
        return tf.cast(tf.tensordot(rows, self.projection, axes=1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.output_dim])

    def collapsed_table(self):
        """``A @ B``: the ``input_dim × output_dim`` table served in place of the layer (NumPy)."""
        if self.dynamic_table:
            raise TypeError(f"MLETEmbedding {self.name!r} keeps a dynamic table, which has no fixed row "
                            "order; use collapse(), which returns a StaticEmbedding keyed by id.")
        self._require_built("collapsed_table")
        return tf.matmul(self.embeddings, self.projection).numpy()

    def collapse(self):
        """The inference layer: a plain ``tf.keras.layers.Embedding(input_dim, output_dim)`` holding
        ``A @ B`` (for a dynamic table, a ``tf_freqsgd.layers.StaticEmbedding`` of the projected
        rows, keyed by id), of this layer's name. Its lookups equal this layer's outputs."""
        self._require_built("collapse")
        if self.dynamic_table:
            from tf_freqsgd.export import serving

            keys, rows, default_row = serving.frozen_table(self.inner_table)
            projection = self.projection.numpy()
            return StaticEmbedding(keys, rows @ projection, default_row @ projection,
                                           name=self.name, dtype=self.dtype)
        return common.embedding_holding(self.collapsed_table(), name=self.name, dtype=self.dtype)

    def serving_layer(self):
        """What ``tf_freqsgd.export.export_for_serving`` writes in place of this layer."""
        return self.collapse()

    def inference_parameter_count(self):
        """Parameters served after ``collapse()``: ``input_dim · output_dim`` (ids held, for a dynamic table)."""
        if self.dynamic_table:
            return int(self.inner_table.params.size()) * self.output_dim
        return self.input_dim * self.output_dim

    def training_parameter_count(self):
        """Parameters trained: ``input_dim · inner_dim + inner_dim · output_dim``."""
        rows = int(self.inner_table.params.size()) if self.dynamic_table else self.input_dim
        return rows * self.inner_dim + self.inner_dim * self.output_dim

    def _require_built(self, method):
        if not self.built:
            raise RuntimeError(f"MLETEmbedding {self.name!r}: call the layer (or build it) before {method}().")

    def get_config(self):
        config = super().get_config()
        config.update({
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "inner_dim": self.inner_dim,
            "embeddings_initializer": tf.keras.initializers.serialize(self.embeddings_initializer),
            "projection_initializer": tf.keras.initializers.serialize(self.projection_initializer),
            "dynamic_table": self.dynamic_table,
        })
        return config



def _drawing_anew(initializer):
    """TensorFlow's equivalent of a random tf_keras initializer, for a TFRA table.

    TFRA draws a new id's row from the initializer when the id is first trained; a tf_keras random
    initializer returns the same matrix at every call, so ids first trained in the same batch
    position would start from the same row. TensorFlow's initializers draw anew.
    """
    config = initializer.get_config()
    if isinstance(initializer, tf.keras.initializers.RandomUniform):
        return tf.random_uniform_initializer(config["minval"], config["maxval"], seed=config["seed"])
    if isinstance(initializer, tf.keras.initializers.RandomNormal):
        return tf.random_normal_initializer(config["mean"], config["stddev"], seed=config["seed"])
    return initializer
