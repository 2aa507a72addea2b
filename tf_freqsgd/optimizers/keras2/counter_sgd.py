"""CounterSGD for tf_keras (the maths: ``tf_freqsgd.optimizers.counter_sgd``)."""

import tf_keras

from tf_freqsgd.optimizers.counter_sgd import CounterSGDDefinition
from tf_freqsgd.optimizers.counting import CountsRows
from tf_freqsgd.optimizers.keras2.base import FrequencyAwareOptimizer
from tf_freqsgd.optimizers.scaled_sgd import ScaledSGD


@tf_keras.utils.register_keras_serializable(package="tf_freqsgd")
class CounterSGD(CounterSGDDefinition, CountsRows, ScaledSGD, FrequencyAwareOptimizer):
    __doc__ = CounterSGDDefinition.__doc__
