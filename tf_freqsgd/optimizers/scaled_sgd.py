"""SGD with a per-row rate scale: the update shared by ``CounterSGD`` and ``FrequencySGD``.

Sparse rows:  ``w_k <- rho_k * w_k - lr_t * scale_k * d_k``
Dense values: ``w   <- rho   * w   - lr_t * d``        (plain SGD, ``rho = max(0, 1 - lr_t * wd)``)

``d`` is the gradient, or with momentum ``m <- momentum * m + g`` and ``d = m``
(``d = g + momentum * m`` with Nesterov). On sparse gradients the momentum of a row is updated
only when the row appears (lazy momentum), so a step stays O(batch).
"""

import tensorflow as tf

from tf_freqsgd import arguments
from tf_freqsgd.optimizers import base
from tf_freqsgd.optimizers.frequency_rule import per_row


class ScaledSGD(base.FrequencyAwareOptimizer):
    def __init__(self, learning_rate, rule, momentum, nesterov, name, **kwargs):
        momentum = arguments.number("momentum", momentum, 0.0)
        if momentum >= 1.0:
            raise ValueError(f"`momentum` must be a number in [0, 1); got {momentum!r}.")
        if not isinstance(nesterov, bool):
            raise ValueError(f"`nesterov` must be True or False; got {nesterov!r}.")
        super().__init__(learning_rate, rule, name, **kwargs)
        self.momentum = momentum
        self.nesterov = nesterov

    def state_settings(self):
        return {**super().state_settings(), "momentum": "on" if self.momentum > 0 else "off"}

    def _create_slots(self, variable):
        slots = self._create_frequency_slots(variable)
        if self.momentum > 0:
            slots["momentum"] = self.add_variable_from_reference(variable, "m")
        return slots

    def _direction(self, slots, g, ids=None):
        if "momentum" not in slots:
            return g
        slot = slots["momentum"]
        previous = slot if ids is None else tf.gather(slot, ids)
        m = self.momentum * tf.cast(previous, tf.float32) + g
        if ids is None:
            slot.assign(tf.cast(m, slot.dtype))
        else:
            base.write_rows(slot, ids, m)
        return g + self.momentum * m if self.nesterov else m

    def _apply_sparse(self, variable, slots, ids, rows, counts, frequency):
        g = tf.cast(rows, tf.float32)
        rate = self.base_rate() * self.rule.rate_scale(counts, frequency, self.step)
        decay = self.decay_factor(variable, rate, frequency)
        step = per_row(rate, g) * self._direction(slots, g, ids)
        if decay is None:
            variable.scatter_sub(tf.IndexedSlices(tf.cast(step, variable.dtype), ids))
        else:
            weights = tf.cast(tf.gather(variable, ids), tf.float32)
            base.write_rows(variable, ids, per_row(decay, g) * weights - step)

    def _apply_dense(self, variable, slots, gradient):
        g = tf.cast(gradient, tf.float32)
        rate = self.base_rate()
        weights = tf.cast(variable, tf.float32)
        decay = self.dense_decay_factor(variable, rate)
        if decay is not None:
            weights = decay * weights
        variable.assign(tf.cast(weights - rate * self._direction(slots, g), variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config
