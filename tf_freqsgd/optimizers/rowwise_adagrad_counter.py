"""RowwiseAdagradCounter: row-wise Adagrad whose rate is adjusted by the row's counter (its
definition; the Keras classes are ``keras2.RowwiseAdagradCounter`` and ``keras3.RowwiseAdagradCounter``)."""

import tensorflow as tf

from tf_freqsgd import arguments
from tf_freqsgd.optimizers.counter import CounterSpec
from tf_freqsgd.optimizers.frequency_rule import FrequencyRule
from tf_freqsgd.optimizers.updates import RowwiseAdagradUpdate


class RowwiseAdagradCounterDefinition:
    r"""Row-wise Adagrad with counter-adjusted rates (FBGEMM ``rowwise_adagrad_with_counter``).

    One accumulator ``G_k`` per row (TorchRec's default embedding optimizer) plus the counter
    machinery of ``CounterSGD``. For each row ``k`` of the batch, ``g_k`` its summed gradient:

    .. math::

        g_k &\leftarrow g_k \cdot \min\Big(1,\ \frac{o_k \max(r\, \|w_k\|_2,\ \zeta)}{\|g_k\|_2}\Big)
            \qquad (\text{CowClip, with } r = \texttt{cowclip\_ratio}) \\
        G_k &\leftarrow G_k + \mathrm{mean}_j\, g_{kj}^2 \\
        \eta_k &= \frac{\eta_t}{\sqrt{G_k} + \epsilon}\cdot
                  \mathrm{clip}(f_k^{-\text{power}},\ \text{min\_scale},\ \text{max\_scale}) \\
        w_k &\leftarrow \rho_k\, w_k - \eta_k\, g_k, \qquad
        \rho_k = \max(0,\ 1 - \eta_{wd}\lambda)^{\max(1,\ 1/p_k)}

    with ``c_k``, ``p_k = c_k / N_t`` and ``f_k`` as in ``CounterSGD`` (the counter scale is 1 in
    warm-up and for tail rows), and CowClip, when on, as in ``CounterSGD``: the accumulator sees
    the clipped gradient. FBGEMM's modes map as: ``learning_rate_mode=0`` (scale
    ``clip((max_c/c)^ub, 1, 10)``) ~ ``estimate="frequency", power=ub, min_scale=1, max_scale=10``
    with ``N_t`` in place of the largest counter; ``learning_rate_mode=2`` (``lr / sqrt(ub * c)``,
    no Adagrad denominator) is ``CounterSGD(estimate="count")``. ``power=0`` gives plain row-wise
    Adagrad. Dense gradients get row-wise Adagrad without the counter scale.

    State per row: the accumulator and the counter (8 bytes; 12 with a half-life), against
    Adagrad's ``d`` floats per row.

    Args:
      initial_accumulator_value: starting ``G_k``; epsilon: ``epsilon`` above.
      Others: as ``CounterSGD`` (no momentum; ``cowclip_ratio`` and ``cowclip_min_norm`` included).
    """

    def __init__(
        self,
        learning_rate=0.1,
        initial_accumulator_value=0.1,
        epsilon=1e-7,
        power=0.5,
        estimate="frequency",
        counting="occurrence",
        min_scale=0.0,
        max_scale=None,
        counter_halflife=None,
        admission_count=None,
        warmup_steps=0,
        tail_id_threshold=0.0,
        weight_decay=0.0,
        weight_decay_mode="decoupled",
        cowclip_ratio=None,
        cowclip_min_norm=1e-5,
        name="RowwiseAdagradCounter",
        **kwargs,
    ):
        initial_accumulator_value = arguments.number("initial_accumulator_value", initial_accumulator_value, 0.0)
        epsilon = arguments.number("epsilon", epsilon, 0.0)
        rule = FrequencyRule(power=power, estimate=estimate, min_scale=min_scale, max_scale=max_scale,
                             warmup_steps=warmup_steps, tail_id_threshold=tail_id_threshold,
                             weight_decay=weight_decay, weight_decay_mode=weight_decay_mode,
                             cowclip_ratio=cowclip_ratio, cowclip_min_norm=cowclip_min_norm)
        counter_spec = CounterSpec(counting=counting, halflife=counter_halflife, admission_count=admission_count)
        super().__init__(learning_rate, rule, name, counter_spec=counter_spec, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def _create_slots(self, variable):
        if not tf.TensorShape(variable.shape).rank:
            return {"accumulator": self.add_row_variable(variable, "accumulator",
                                                         initial_value=self.initial_accumulator_value, per_row=False)}
        return self._create_counter_slots(variable, {"accumulator": (tf.float32, self.initial_accumulator_value)})

    def _update(self, variable):
        return RowwiseAdagradUpdate(self.rule, self._decays(variable), self.epsilon)

    def fused_op_applies(self, slots):
        """Whether the fused op can make the step: not with CowClip, which it lacks."""
        return not self.rule.clips

    def _fused_apply(self, ops, variable, slots, gradient, lr):
        """One sparse step with the fused op (TensorFlow ``slots``), or False (``fused_op_applies``)."""
        if not self.fused_op_applies(slots):
            return False
        ops.resource_sparse_apply_rowwise_adagrad_counter(
            variable.handle, slots["accumulator"].handle, slots["counter"].handle, lr, self.step, gradient.values,
            gradient.indices, epsilon=self.epsilon, **self.fused_attributes(variable))
        return True

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}
