"""RowwiseAdagradCounter for tf_keras (the maths: ``tf_freqsgd.optimizers.rowwise_adagrad_counter``)."""

import tf_keras

from tf_freqsgd.optimizers.keras2 import base
from tf_freqsgd.optimizers.counting import CountsRows
from tf_freqsgd.optimizers.rowwise_adagrad_counter import RowwiseAdagradCounterDefinition


@tf_keras.utils.register_keras_serializable(package="tf_freqsgd")
class RowwiseAdagradCounter(RowwiseAdagradCounterDefinition, CountsRows, base.FrequencyAwareOptimizer):
    __doc__ = RowwiseAdagradCounterDefinition.__doc__
