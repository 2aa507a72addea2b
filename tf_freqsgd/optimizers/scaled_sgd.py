"""SGD with a per-row rate scale: the update shared by ``CounterSGD`` and ``FrequencySGD``.

Sparse rows:  ``w_k <- rho_k * w_k - lr_t * scale_k * d_k``
Dense values: ``w   <- rho   * w   - lr_t * d``        (plain SGD, ``rho = max(0, 1 - lr_t * wd)``)

``d`` is the gradient, or with momentum ``m <- momentum * m + g`` and ``d = m``
(``d = g + momentum * m`` with Nesterov). On sparse gradients the momentum of a row is updated
only when the row appears (lazy momentum), so a step stays O(batch).

A mixin of every front: listed before the front's ``FrequencyAwareOptimizer``.
"""

from tf_freqsgd import arguments
from tf_freqsgd.optimizers.updates import ScaledSGDUpdate


class ScaledSGD:
    def __init__(self, learning_rate, rule, name, momentum=0.0, nesterov=False, **kwargs):
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
        slots = self._create_frequency_slots(variable)  # the counter, or the given frequencies
        if self.momentum > 0:
            slots["momentum"] = self.add_variable_from_reference(variable, "m")
        return slots

    def _update(self, variable):
        return ScaledSGDUpdate(self.rule, self._decays(variable), self.momentum, self.nesterov)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config
