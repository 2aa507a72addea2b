"""RowwiseAdagradCounter for tf_keras (the maths: ``tf_freqsgd.optimizers.rowwise_adagrad_counter``)."""

import tf_keras

from tf_freqsgd.optimizers.keras2 import base
from tf_freqsgd.optimizers.counting import CountsRows
from tf_freqsgd.optimizers.rowwise_adagrad_counter import RowwiseAdagradCounterDefinition
from tf_freqsgd.optimizers.updates import RowwiseAdagradUpdate


@tf_keras.utils.register_keras_serializable(package="tf_freqsgd")
class RowwiseAdagradCounter(RowwiseAdagradCounterDefinition, CountsRows, base.FrequencyAwareOptimizer):
    __doc__ = RowwiseAdagradCounterDefinition.__doc__

    def _create_slots(self, variable):
        slots = self._create_counter_slots(variable)
        slots["accumulator"] = self.add_row_variable(
            variable, "accumulator", initial_value=self.initial_accumulator_value,
            per_row=bool(variable.shape.rank),
        )
        return slots

    def _update(self, variable):
        return RowwiseAdagradUpdate(self.rule, self._decays(variable), self.epsilon)
