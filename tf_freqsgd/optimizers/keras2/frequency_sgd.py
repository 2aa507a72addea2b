"""FrequencySGD: FA-SGD, frequency-aware SGD with the frequencies given up front."""

import numpy as np
import tensorflow as tf
import tf_keras

from tf_freqsgd.optimizers import row_storage as dynamic
from tf_freqsgd.optimizers.row_storage import gather_rows
from tf_freqsgd.optimizers.frequency_rule import FrequencyRule
from tf_freqsgd.optimizers.keras2.scaled_sgd import ScaledSGD


def _plain_name(name):
    return name[:-2] if name.endswith(":0") else name


def _table_name(variable):
    """The name ``frequencies`` uses for a variable: a dynamic table's own name
    (``layer.params.name``), else the variable's."""
    return variable.params.name if dynamic.is_dynamic(variable) else _plain_name(variable.name)


def _check_values(name, values, expected_shape):
    if values.shape != expected_shape:
        raise ValueError(
            f"`frequencies` for variable '{name}' has shape {values.shape}; expected {expected_shape}, "
            "one value per row."
        )
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if bad.size:
        raise ValueError(
            f"`frequencies` for variable '{name}' must be finite and > 0; row {bad[0]} is {values[bad[0]]}."
        )


@tf_keras.utils.register_keras_serializable(package="tf_freqsgd")
class FrequencySGD(ScaledSGD):
    r"""Frequency-aware SGD (FA-SGD, arXiv 2110.04844) with known id frequencies.

    The rule of ``CounterSGD`` with ``f_k`` read from a fixed table instead of a counter:

    .. math::

        \eta_k = \eta_t \cdot \mathrm{clip}(f_k^{-\text{power}},\ \text{min\_scale},\ \text{max\_scale}),
        \qquad w_k \leftarrow \rho_k\, w_k - \eta_k\, g_k,
        \qquad \rho_k = \max(0,\ 1 - \eta_{wd}\lambda)^{\max(1,\ 1/p_k)}

    ``f_k`` is the given value: a frequency ``p_k`` (``estimate="frequency"``: the expected number
    of times id ``k`` appears in one training step, e.g. ``counts / steps_per_epoch``) or a raw
    count (``estimate="count"``). For weight decay, raw counts become ``p_k = f_k / max_j f_j``.
    ``eta_k = eta_t`` during warm-up. Rows of variables without a table, and dense gradients,
    get plain SGD (with optional momentum and Nesterov).

    Args:
      frequencies: per variable, a 1-D array with one positive value per row: a dict from variable
        name (``"embedding/embeddings"``, with or without ``":0"``) to array, or a callable taking
        a variable and returning its array or None. The tables are optimizer variables, so they are
        saved and restored with the optimizer. For a TFRA dynamic table, a pair ``(ids, values)``
        of 1-D arrays under the table's name (``layer.params.name``); ids not given get ``f = 1``
        (plain SGD), and the values live in a width-1 hash table keyed by id.
      Others: as ``CounterSGD``.
    """

    def __init__(
        self,
        frequencies,
        learning_rate=0.1,
        power=0.5,
        estimate="frequency",
        min_scale=0.0,
        max_scale=None,
        warmup_steps=0,
        weight_decay=0.0,
        weight_decay_mode="decoupled",
        momentum=0.0,
        nesterov=False,
        name="FrequencySGD",
        **kwargs,
    ):
        if not (isinstance(frequencies, dict) or callable(frequencies)):
            raise ValueError(
                "`frequencies` must be a dict from variable name to array, or a callable; "
                f"got {type(frequencies).__name__}."
            )
        rule = FrequencyRule(
            power=power,
            estimate=estimate,
            min_scale=min_scale,
            max_scale=max_scale,
            warmup_steps=warmup_steps,
            weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode,
        )
        super().__init__(learning_rate, rule, momentum, nesterov, name, **kwargs)
        if isinstance(frequencies, dict):
            frequencies = {_plain_name(key): value for key, value in frequencies.items()}
        self._frequencies = frequencies
        self._tabled_names = []

    def _given(self, variable):
        name = _table_name(variable)
        if callable(self._frequencies):
            return name, self._frequencies(variable)
        if name not in self._frequencies:
            return name, None
        given = self._frequencies[name]
        # From get_config: the table exists but its values come from the restored variables.
        return name, np.ones(variable.shape[0], np.float32) if given is None else given

    def build(self, var_list):
        super().build(var_list)
        if isinstance(self._frequencies, dict):
            trained = {_table_name(v) for v in var_list}
            unknown = set(self._frequencies) - trained
            if unknown:
                raise ValueError(
                    f"`frequencies` names variables that are not being trained: {sorted(unknown)}; "
                    f"trained variables: {sorted(trained)}."
                )

    def _create_frequency_slots(self, variable):
        name, given = self._given(variable)
        if given is None:
            return {}
        if dynamic.is_dynamic(variable):
            slots, values = self._dynamic_frequency_table(name, variable, given)
        else:
            values = np.asarray(given, dtype=np.float64)
            _check_values(name, values, (variable.shape[0] if variable.shape.rank else None,))
            slots = {"frequency": self.add_row_variable(variable, "frequency", initial_value=values)}
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
        _check_values(name, values, ids.shape)
        table = self.add_row_variable(variable, "frequency", initial_value=1.0)
        # Once, when the optimizer is built, even inside the first traced step.
        with tf.init_scope():
            table.upsert(tf.constant(ids, table.key_dtype), tf.constant(values[:, None], tf.float32))
        return {"frequency": table}, values

    def state_settings(self):
        # estimate="count" keeps the largest given count beside each table.
        return {**super().state_settings(), "estimate": self.rule.estimate}

    def _observe(self, slots, ids, occurrences):
        if "frequency" not in slots:
            ones = tf.ones_like(occurrences)
            return ones, ones
        given = gather_rows(slots["frequency"], ids)
        if "max_count" in slots:
            return given, given / slots["max_count"]
        return given, given

    def get_config(self):
        config = super().get_config()
        if isinstance(self._frequencies, dict) and not self._tabled_names:
            names = self._frequencies
        else:
            names = self._tabled_names
        config["frequencies"] = {name: None for name in names}
        return config
