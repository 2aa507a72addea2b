"""tf_freqsgd: frequency-aware optimizers for embedding training in TensorFlow / tf_keras.

Importing this package selects legacy Keras (``TF_USE_LEGACY_KERAS=1``) when TensorFlow has not
resolved ``tf.keras`` yet, and raises ``ImportError`` naming the fix when it already resolved to
Keras 3. It also keeps AutoGraph from converting tf_keras's internals, which made each process's
first ``fit`` take 13-19 s (``TF_FREQSGD_CONVERT_TF_KERAS=1`` opts out; see
``tf_freqsgd._compat.exclude_tf_keras_from_autograph``).
"""

from tf_freqsgd import _compat

_compat.check_python_version()
_compat.select_legacy_keras()

from tf_freqsgd.optimizers import CounterSGD, FrequencySGD, RowwiseAdagradCounter  # noqa: E402
from tf_freqsgd.optimizers import optimizer_state_bytes  # noqa: E402

_compat.exclude_tf_keras_from_autograph()

__version__ = "0.2.0"

__all__ = [
    "CounterSGD",
    "FrequencySGD",
    "RowwiseAdagradCounter",
    "optimizer_state_bytes",
]
