"""RowwiseAdagradCounter: row-wise Adagrad whose rate is adjusted by the row's counter."""

import tensorflow as tf
import tf_keras

from tf_freqsgd import arguments
from tf_freqsgd.dynamic.tables import gather_rows
from tf_freqsgd.optimizers import base
from tf_freqsgd.optimizers.counter import CounterSpec
from tf_freqsgd.optimizers.frequency_rule import FrequencyRule, per_row


def _mean_square_per_row(g):
    return tf.reduce_mean(tf.square(g), axis=list(range(1, g.shape.rank))) if g.shape.rank > 1 else tf.square(g)


@tf_keras.utils.register_keras_serializable(package="tf_freqsgd")
class RowwiseAdagradCounter(base.FrequencyAwareOptimizer):
    r"""Row-wise Adagrad with counter-adjusted rates (FBGEMM ``rowwise_adagrad_with_counter``).

    One accumulator ``G_k`` per row (TorchRec's default embedding optimizer) plus the counter
    machinery of ``CounterSGD``. For each row ``k`` of the batch, ``g_k`` its summed gradient:

    .. math::

        G_k &\leftarrow G_k + \mathrm{mean}_j\, g_{kj}^2 \\
        \eta_k &= \frac{\eta_t}{\sqrt{G_k} + \epsilon}\cdot
                  \mathrm{clip}(f_k^{-\text{power}},\ \text{min\_scale},\ \text{max\_scale}) \\
        w_k &\leftarrow \rho_k\, w_k - \eta_k\, g_k, \qquad
        \rho_k = \max(0,\ 1 - \eta_{wd}\lambda)^{\max(1,\ 1/p_k)}

    with ``c_k``, ``p_k = c_k / N_t`` and ``f_k`` as in ``CounterSGD`` (the counter scale is 1 in
    warm-up and for tail rows). FBGEMM's modes map as: ``learning_rate_mode=0`` (scale
    ``clip((max_c/c)^ub, 1, 10)``) ~ ``estimate="frequency", power=ub, min_scale=1, max_scale=10``
    with ``N_t`` in place of the largest counter; ``learning_rate_mode=2`` (``lr / sqrt(ub * c)``,
    no Adagrad denominator) is ``CounterSGD(estimate="count")``. ``power=0`` gives plain row-wise
    Adagrad. Dense gradients get row-wise Adagrad without the counter scale.

    State per row: the accumulator and the counter (and the last-seen step with a half-life),
    against Adagrad's ``d`` floats per row.

    Args:
      initial_accumulator_value: starting ``G_k``; epsilon: ``epsilon`` above.
      Others: as ``CounterSGD`` (no momentum).
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
        name="RowwiseAdagradCounter",
        **kwargs,
    ):
        initial_accumulator_value = arguments.number("initial_accumulator_value", initial_accumulator_value, 0.0)
        epsilon = arguments.number("epsilon", epsilon, 0.0)
        rule = FrequencyRule(
            power=power,
            estimate=estimate,
            min_scale=min_scale,
            max_scale=max_scale,
            warmup_steps=warmup_steps,
            tail_id_threshold=tail_id_threshold,
            weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode,
        )
        self.counter_spec = CounterSpec(counting=counting, halflife=counter_halflife, admission_count=admission_count)
        super().__init__(learning_rate, rule, name, **kwargs)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def _create_slots(self, variable):
        slots = self.counter_spec.create_slots(self, variable)
        slots["accumulator"] = self.add_row_variable(
            variable, "accumulator", initial_value=self.initial_accumulator_value,
            per_row=bool(variable.shape.rank),
        )
        return slots

    def _apply_fused(self, variable, slots, gradient):
        ops = self.fused_ops_for(variable)
        if ops is None:
            return False
        ops.resource_sparse_apply_rowwise_adagrad_counter(
            variable.handle, slots["accumulator"].handle, slots["counter"].handle, self.base_rate(), self.step,
            gradient.values, gradient.indices, epsilon=self.epsilon, **self.fused_rule_attributes(variable))
        return True

    def _observe(self, slots, ids, occurrences):
        return self.counter_spec.observe(slots, ids, occurrences, self.step)

    def _adagrad_rate(self, accumulator, g, ids=None):
        """Adds the rows' mean squared gradient to ``G`` and returns ``lr / (sqrt(G) + eps)``."""
        previous = accumulator if ids is None else gather_rows(accumulator, ids)
        total = previous + _mean_square_per_row(g)
        if ids is None:
            accumulator.assign(total)
        else:
            base.write_rows(accumulator, ids, total)
        return self.base_rate() / (tf.sqrt(total) + self.epsilon)

    def _apply_sparse(self, variable, slots, ids, rows, counts, frequency):
        g = tf.cast(rows, tf.float32)
        rate = self._adagrad_rate(slots["accumulator"], g, ids)
        rate = rate * self.rule.rate_scale(counts, frequency, self.step)
        decay = self.decay_factor(variable, rate, frequency)
        weights = tf.cast(tf.gather(variable, ids), tf.float32)
        if decay is not None:
            weights = per_row(decay, g) * weights
        base.write_rows(variable, ids, weights - per_row(rate, g) * g)

    def _apply_dense(self, variable, slots, gradient):
        g = tf.cast(gradient, tf.float32)
        rate = self._adagrad_rate(slots["accumulator"], g)
        weights = tf.cast(variable, tf.float32)
        if g.shape.rank:
            rate = per_row(rate, g)
        decay = self.dense_decay_factor(variable, rate)
        if decay is not None:
            weights = decay * weights
        variable.assign(tf.cast(weights - rate * g, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon,
                "counting": self.counter_spec.counting,
                "counter_halflife": self.counter_spec.halflife,
                "admission_count": self.counter_spec.admission_count,
                "tail_id_threshold": self.rule.tail_id_threshold,
            }
        )
        return config
