"""``RowEmbedding``: Keras 3's ``Embedding`` with a lookup that reads the batch's rows only.

On TensorFlow, Keras 3's ``Embedding`` looks up with ``ops.take(self.embeddings, ids)``, which
converts the table variable to a tensor: a read of the whole table. The optimizer's scatter into
the table then finds the buffer still referenced and copies it whole first. On a 1M x 64 table
that copy is most of a step, whatever the optimizer (README, "Step time with Keras 3").
``RowEmbedding`` gathers from the variable itself (``ResourceGather``), as tf_keras's Embedding
does: same weights, same gradients (``IndexedSlices``), same config, a drop-in replacement. Other
backends, and quantized or LoRA tables, take Keras' own lookup.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tf_freqsgd")
class RowEmbedding(keras.layers.Embedding):
    def call(self, inputs):
        if keras.backend.backend() != "tensorflow" or self.quantization_mode or self.lora_enabled:
            return super().call(inputs)
        if inputs.dtype not in (tf.int32, tf.int64):
            inputs = tf.cast(inputs, tf.int32)
        return tf.cast(tf.gather(self._embeddings.value, inputs), self.compute_dtype)
