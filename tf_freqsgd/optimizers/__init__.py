"""Frequency-aware optimizers: one rule core and a front for each Keras.

* The core, backend-neutral: ``counter`` (per-row counters), ``frequency_rule`` (rate scale and
  weight decay), ``settings`` (what a checkpoint's state means), ``step_checks`` (TensorFlow's
  all-or-nothing checks), ``state`` (bytes held).
* ``keras2``: ``tf_keras`` optimizers; ``keras3``: ``keras.optimizers.Optimizer`` subclasses.

``CounterSGD``, ``FrequencySGD`` and ``RowwiseAdagradCounter`` here are those of the Keras that
``tf.keras`` is in this process (``tf_freqsgd.active_keras()``).
"""

from tf_freqsgd._compat import TF_KERAS, active_keras
from tf_freqsgd.optimizers.state import optimizer_state_bytes

if active_keras() == TF_KERAS:
    from tf_freqsgd.optimizers.keras2 import CounterSGD, FrequencySGD, RowwiseAdagradCounter
else:
    from tf_freqsgd.optimizers.keras3 import CounterSGD, FrequencySGD, RowwiseAdagradCounter

__all__ = ["CounterSGD", "FrequencySGD", "RowwiseAdagradCounter", "optimizer_state_bytes"]
