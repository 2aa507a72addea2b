"""FrequencySGD for tf_keras (the maths: ``tf_freqsgd.optimizers.frequency_sgd``)."""

import re

import numpy as np
import tensorflow as tf
import tf_keras

from tf_freqsgd import _tf_internals
from tf_freqsgd.optimizers import row_storage as dynamic
from tf_freqsgd.optimizers.frequency_sgd import FrequencySGDDefinition, check_values, plain_name
from tf_freqsgd.optimizers.keras2.base import FrequencyAwareOptimizer
from tf_freqsgd.optimizers.scaled_sgd import ScaledSGD
from tf_freqsgd.optimizers.row_storage import gather_rows


def _table_name(variable):
    """The name ``frequencies`` uses for a variable: a dynamic table's own name
    (``layer.params.name``), a partitioned table's (not its shard's), else the variable's."""
    if dynamic.is_dynamic(variable):
        return variable.params.name
    name = plain_name(variable.name)
    # A shard is "<table>/part_<k>".
    return re.sub(r"/part_\d+$", "", name) if _tf_internals.sharded_container(variable) is not None else name


def _shard_rows(variable, values):
    """The part of a whole table's ``values`` that a shard of it holds (all of them otherwise)."""
    table = _tf_internals.sharded_container(variable)
    if table is None:
        return values
    offset = 0
    for shard in table.variables:
        if shard is variable:
            return values[offset:offset + shard.shape[0]]
        offset += shard.shape[0]
    raise ValueError(f"{variable.name} is not a shard of {table.name}.")


@tf_keras.utils.register_keras_serializable(package="tf_freqsgd")
class FrequencySGD(FrequencySGDDefinition, ScaledSGD, FrequencyAwareOptimizer):
    __doc__ = FrequencySGDDefinition.__doc__

    def build(self, var_list):
        super().build(var_list)
        self.check_frequencies_named([_table_name(v) for v in var_list])

    def _create_frequency_slots(self, variable):
        name = _table_name(variable)
        given = self.given_frequencies(name, variable)
        if given is None:
            return {}
        if dynamic.is_dynamic(variable):
            slots, values = self._dynamic_frequency_table(name, variable, given)
        else:
            whole = np.asarray(given, dtype=np.float64)
            table = _tf_internals.sharded_container(variable) or variable
            check_values(name, whole, (table.shape[0] if table.shape.rank else None,))
            slots = {"frequency": self.add_row_variable(variable, "frequency",
                                                        initial_value=_shard_rows(variable, whole))}
            values = whole  # the largest count is the whole table's
        if name not in self._tabled_names:
            self._tabled_names.append(name)
        if self.rule.estimate == "count":
            slots["max_count"] = self.add_row_variable(
                variable, "max_count", initial_value=values.max(), per_row=False
            )
        return slots

    def _dynamic_frequency_table(self, name, variable, given):
        if not (isinstance(given, (tuple, list)) and len(given) == 2):
            raise ValueError(
                f"`frequencies` for the dynamic table '{name}' must be a pair (ids, values) of 1-D arrays."
            )
        ids = np.asarray(given[0])
        values = np.asarray(given[1], dtype=np.float64)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"`frequencies` ids for '{name}' must be a 1-D integer array; got {ids.dtype}{ids.shape}.")
        check_values(name, values, ids.shape)
        table = self.add_row_variable(variable, "frequency", initial_value=1.0)
        # Once, when the optimizer is built, even inside the first traced step.
        with tf.init_scope():
            table.upsert(tf.constant(ids, table.key_dtype), tf.constant(values[:, None], tf.float32))
        return {"frequency": table}, values

    def _observe(self, slots, ids, occurrences):
        if "frequency" not in slots:
            ones = tf.ones_like(occurrences)
            return ones, ones
        given = gather_rows(slots["frequency"], ids)
        if "max_count" in slots:
            return given, given / slots["max_count"]
        return given, given
