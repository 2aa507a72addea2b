"""RowwiseAdagradCounter for Keras 3 (the maths: ``tf_freqsgd.optimizers.rowwise_adagrad_counter``)."""

import keras

from tf_freqsgd.optimizers.keras3.base import FrequencyAwareOptimizer
from tf_freqsgd.optimizers.keras3.counting import KerasCountsRows
from tf_freqsgd.optimizers.rowwise_adagrad_counter import RowwiseAdagradCounterDefinition


@keras.saving.register_keras_serializable(package="tf_freqsgd")
class RowwiseAdagradCounter(RowwiseAdagradCounterDefinition, KerasCountsRows, FrequencyAwareOptimizer):
    __doc__ = RowwiseAdagradCounterDefinition.__doc__
