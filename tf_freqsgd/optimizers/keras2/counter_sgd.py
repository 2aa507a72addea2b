"""CounterSGD for tf_keras (the maths: ``tf_freqsgd.optimizers.counter_sgd``)."""

import tf_keras

from tf_freqsgd.optimizers.counter_sgd import CounterSGDDefinition
from tf_freqsgd.optimizers.keras2.counting import CountsRows
from tf_freqsgd.optimizers.keras2.scaled_sgd import ScaledSGD


@tf_keras.utils.register_keras_serializable(package="tf_freqsgd")
class CounterSGD(CounterSGDDefinition, CountsRows, ScaledSGD):
    __doc__ = CounterSGDDefinition.__doc__

    def _create_frequency_slots(self, variable):
        return self._create_counter_slots(variable)

    def _apply_fused(self, variable, slots, gradient):
        ops = self.fused_ops_for(variable)
        if ops is None or "momentum" in slots:
            return False
        ops.resource_sparse_apply_counter_sgd(
            variable.handle, slots["counter"].handle, self.base_rate(), self.step, gradient.values,
            gradient.indices, **self.fused_attributes(variable))
        return True
