"""The frequency-aware optimizers for tf_keras (Keras 2), also reachable by name in ``compile``.

Importing this module adds AutoGraph rules so that tf_keras's internals are not converted
(``tf_freqsgd._compat.exclude_tf_keras_from_autograph``): a process's first ``fit`` starts in about
a second instead of 13-19 s.
"""

import tf_keras

from tf_freqsgd import _compat
from tf_freqsgd.optimizers.keras2.counter_sgd import CounterSGD
from tf_freqsgd.optimizers.keras2.frequency_sgd import FrequencySGD
from tf_freqsgd.optimizers.keras2.rowwise_adagrad_counter import RowwiseAdagradCounter

_compat.exclude_tf_keras_from_autograph()

# model.compile(optimizer="counter_sgd") resolves names through Keras' global custom objects.
tf_keras.utils.get_custom_objects().update(
    {
        "counter_sgd": CounterSGD,
        "rowwise_adagrad_counter": RowwiseAdagradCounter,
    }
)

__all__ = ["CounterSGD", "FrequencySGD", "RowwiseAdagradCounter"]
