"""tf_freqsgd: frequency-aware optimizers for embedding training in TensorFlow / Keras.

The optimizers are those of the Keras that ``tf.keras`` is in this process, which TensorFlow
decides from ``TF_USE_LEGACY_KERAS`` (``1``: tf_keras, Keras 2; unset: Keras 3). tf_freqsgd never
sets it: ``active_keras()`` names the choice. Both fronts stay importable as
``tf_freqsgd.optimizers.keras2`` and ``tf_freqsgd.optimizers.keras3``.
"""

from tf_freqsgd._compat import active_keras
from tf_freqsgd.optimizers import CounterSGD, FrequencySGD, RowwiseAdagradCounter, optimizer_state_bytes

__version__ = "0.3.0"

__all__ = [
    "CounterSGD",
    "FrequencySGD",
    "RowwiseAdagradCounter",
    "active_keras",
    "optimizer_state_bytes",
]
