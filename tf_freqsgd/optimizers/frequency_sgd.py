"""FrequencySGD: FA-SGD, frequency-aware SGD with the frequencies given up front (its definition;
the Keras classes are ``keras2.FrequencySGD`` and ``keras3.FrequencySGD``)."""

import numpy as np

from tf_freqsgd.optimizers.frequency_rule import FrequencyRule


def plain_name(name):
    return name[:-2] if name.endswith(":0") else name


def check_values(name, values, expected_shape):
    """A table of given frequencies: one finite value > 0 per row."""
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


class FrequencySGDDefinition:
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
        rule = FrequencyRule(power=power, estimate=estimate, min_scale=min_scale, max_scale=max_scale,
                             warmup_steps=warmup_steps, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode)
        super().__init__(learning_rate, rule, name, momentum=momentum, nesterov=nesterov, **kwargs)
        if isinstance(frequencies, dict):
            frequencies = {plain_name(key): value for key, value in frequencies.items()}
        self._frequencies = frequencies
        self._tabled_names = []

    def given_frequencies(self, name, variable):
        """The given values of the variable named ``name``, or None."""
        if callable(self._frequencies):
            return self._frequencies(variable)
        if name not in self._frequencies:
            return None
        given = self._frequencies[name]
        # From get_config: the table exists but its values come from the restored variables.
        return np.ones(variable.shape[0], np.float32) if given is None else given

    def check_frequencies_named(self, trained_names):
        if isinstance(self._frequencies, dict):
            unknown = set(self._frequencies) - set(trained_names)
            if unknown:
                raise ValueError(
                    f"`frequencies` names variables that are not being trained: {sorted(unknown)}; "
                    f"trained variables: {sorted(trained_names)}."
                )

    def state_settings(self):
        # estimate="count" keeps the largest given count beside each table.
        return {**super().state_settings(), "estimate": self.rule.estimate}

    def get_config(self):
        config = super().get_config()
        if isinstance(self._frequencies, dict) and not self._tabled_names:
            names = self._frequencies
        else:
            names = self._tabled_names
        config["frequencies"] = {name: None for name in names}
        return config
