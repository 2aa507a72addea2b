"""TFRA dynamic embeddings (hash tables keyed by 64-bit ids) trained by tf_freqsgd's optimizers:
a row's optimizer state in one hash table, admission and eviction by frequency, table sizes.

Needs TensorFlow Recommenders-Addons, which runs on tf_keras only: ``pip install "tf_freqsgd[tfra]"``
(Python 3.11, TensorFlow 2.16.2) and ``TF_USE_LEGACY_KERAS=1``.
"""

import importlib.util

from tf_freqsgd._compat import TF_KERAS, active_keras

if importlib.util.find_spec("tensorflow_recommenders_addons") is None:
    raise ImportError('tf_freqsgd.dynamic needs TensorFlow Recommenders-Addons: pip install "tf_freqsgd[tfra]" '
                      "(TFRA 0.8.1: Python 3.11, TensorFlow 2.16.2, tf_keras).")
if active_keras() != TF_KERAS:
    raise ImportError("tf_freqsgd.dynamic needs tf_keras as tf.keras (TFRA rejects Keras 3): set "
                      "TF_USE_LEGACY_KERAS=1 before TensorFlow is imported.")

from tf_freqsgd.dynamic import saving
from tf_freqsgd.dynamic.callbacks import FrequencyEviction, TableSizeLogger
from tf_freqsgd.dynamic.frequency import evict, table_sizes
from tf_freqsgd.optimizers.row_storage import KeyedRows, gather_rows, is_dynamic

__all__ = ["FrequencyEviction", "KeyedRows", "TableSizeLogger", "evict", "gather_rows", "is_dynamic", "saving", "table_sizes"]
