"""FrequencySGD for Keras 3 (the maths: ``tf_freqsgd.optimizers.frequency_sgd``)."""

import keras
import numpy as np
import tensorflow as tf

from tf_freqsgd.optimizers.frequency_sgd import FrequencySGDDefinition, check_values, plain_name
from tf_freqsgd.optimizers.keras3.base import FrequencyAwareOptimizer
from tf_freqsgd.optimizers.row_storage import gather_rows
from tf_freqsgd.optimizers.scaled_sgd import ScaledSGD


def _names(variable):
    """The names ``frequencies`` may give a variable: ``"<layer>/<weight>"`` (``"embedding/embeddings"``,
    as tf_keras names it), its whole path, or its name."""
    path = plain_name(str(getattr(variable, "path", variable.name)))
    return list(dict.fromkeys(["/".join(path.split("/")[-2:]), path, plain_name(variable.name)]))


@keras.saving.register_keras_serializable(package="tf_freqsgd")
class FrequencySGD(FrequencySGDDefinition, ScaledSGD, FrequencyAwareOptimizer):
    __doc__ = FrequencySGDDefinition.__doc__

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.check_frequencies_named([name for variable in variables for name in _names(variable)])

    def _create_frequency_slots(self, variable):
        name = next((n for n in _names(variable) if self.given_frequencies(n, variable) is not None), None)
        if name is None:
            return {}
        values = np.asarray(self.given_frequencies(name, variable), dtype=np.float64)
        check_values(name, values, (variable.shape[0] if len(variable.shape) else None,))
        self._tabled_names.append(name)
        slots = {"frequency": self.add_row_variable(variable, "frequency", initial_value=values.astype(np.float32))}
        if self.rule.estimate == "count":
            slots["max_count"] = self.add_row_variable(variable, "max_count", initial_value=values.max(),
                                                       per_row=False)
        return slots

    def _observe(self, slots, ids, occurrences):
        if "frequency" not in slots:
            ones = tf.ones_like(occurrences)
            return ones, ones
        given = gather_rows(slots["frequency"], ids)
        return given, given / slots["max_count"] if "max_count" in slots else given

    def _observe_rows(self, xp, slots, present):
        if "frequency" not in slots:
            ones = xp.ones_like(present, dtype=xp.float32)
            return ones, ones
        given = slots["frequency"].value
        return given, given / slots["max_count"].value if "max_count" in slots else given
