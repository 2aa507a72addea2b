"""The frequency-aware optimizers for Keras 3 (``keras.optimizers.Optimizer`` subclasses), also
reachable by name in ``compile``: TensorFlow backend (sparse steps, the fused op) and JAX (dense
gradients, row by row; needs ``jax_enable_x64``)."""

import keras

from tf_freqsgd.optimizers.keras3.counter_sgd import CounterSGD
from tf_freqsgd.optimizers.keras3.frequency_sgd import FrequencySGD
from tf_freqsgd.optimizers.keras3.rowwise_adagrad_counter import RowwiseAdagradCounter

# model.compile(optimizer="counter_sgd") resolves names through Keras' global custom objects.
keras.saving.get_custom_objects().update({"counter_sgd": CounterSGD, "rowwise_adagrad_counter": RowwiseAdagradCounter})

__all__ = ["CounterSGD", "FrequencySGD", "RowwiseAdagradCounter"]
