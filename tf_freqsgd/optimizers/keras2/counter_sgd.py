"""CounterSGD for tf_keras (the maths: ``tf_freqsgd.optimizers.counter_sgd``)."""

import tf_keras

from tf_freqsgd.optimizers.counter_sgd import CounterSGDDefinition
from tf_freqsgd.optimizers.counting import CountsRows
from tf_freqsgd.optimizers.keras2.scaled_sgd import ScaledSGD


@tf_keras.utils.register_keras_serializable(package="tf_freqsgd")
class CounterSGD(CounterSGDDefinition, CountsRows, ScaledSGD):
    __doc__ = CounterSGDDefinition.__doc__

    def _create_frequency_slots(self, variable):
        return self._create_counter_slots(variable)
