"""CounterSGD for Keras 3 (the maths: ``tf_freqsgd.optimizers.counter_sgd``)."""

import keras

from tf_freqsgd.optimizers.counter_sgd import CounterSGDDefinition
from tf_freqsgd.optimizers.keras3.base import FrequencyAwareOptimizer
from tf_freqsgd.optimizers.keras3.counting import KerasCountsRows
from tf_freqsgd.optimizers.scaled_sgd import ScaledSGD


@keras.saving.register_keras_serializable(package="tf_freqsgd")
class CounterSGD(CounterSGDDefinition, KerasCountsRows, ScaledSGD, FrequencyAwareOptimizer):
    __doc__ = CounterSGDDefinition.__doc__
