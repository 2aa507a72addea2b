"""The frequency-aware rate rule that every tf_freqsgd optimizer shares.

Notation, for one embedding table and one training step ``t = 1, 2, ...``:

* ``c_k``, ``N_t`` and ``p_k = c_k / N_t``: row ``k``'s counter, the counter of a row present at
  every step, and the frequency estimate (``tf_freqsgd.optimizers.counter``); or, for
  ``FrequencySGD``, the given frequency.
* ``f_k``: the quantity the rate follows: ``p_k`` (``estimate="frequency"``, FA-SGD with an online
  estimate) or the raw ``c_k`` (``estimate="count"``, FBGEMM's counter mode, ``lr / sqrt(c_k)`` at
  power 0.5).
* Rate scale: ``scale_k = clip(f_k ** -power, min_scale, max_scale)``; 1 during the first
  ``warmup_steps`` steps and for tail rows (``c_k <= tail_id_threshold``).
* Weight decay is applied lazily, to the rows of the batch only, and so catches up on the steps the
  row was absent: ``rho_k = max(0, 1 - eta_wd * weight_decay) ** r_k`` with ``r_k = max(1, 1/p_k)``
  (1 during warm-up), ``eta_wd`` the base rate (``"decoupled"``) or the row's own rate (``"l2"``).
  FBGEMM scales its decay by ``halflife / c_k``, the same inverse frequency up to a constant.
* CowClip (arXiv 2204.06240, FBGEMM's ``COWCLIP``; counter optimizers, when ``cowclip_ratio`` ``r``
  is set): before the update, row ``k``'s summed gradient is clipped to a norm that grows with the
  id's occurrences ``o_k`` in the batch (whatever ``counting`` says) and with its weights' norm:
  ``g_k <- g_k * min(1, clip_k / ||g_k||_2)``, ``clip_k = o_k * max(r * ||w_k||_2, zeta)``,
  ``zeta = cowclip_min_norm``.
"""

import dataclasses
from typing import Optional

from tf_freqsgd import arguments

ESTIMATES = ("frequency", "count")
WEIGHT_DECAY_MODES = ("decoupled", "l2")


def check_learning_rate(learning_rate):
    """A number (Python, NumPy or 0-d tensor) as a float that must be finite and >= 0; schedules
    and other callables pass through (Keras checks them)."""
    if callable(learning_rate) and not hasattr(learning_rate, "numpy"):
        return learning_rate
    return arguments.number("learning_rate", learning_rate, 0.0)


@dataclasses.dataclass(frozen=True)
class FrequencyRule:
    """How a row's frequency turns into its rate scale and weight-decay factor, and its batch
    occurrences into its gradient's CowClip bound."""

    power: float = 0.5
    estimate: str = "frequency"
    min_scale: float = 0.0
    max_scale: Optional[float] = None
    warmup_steps: int = 0
    tail_id_threshold: float = 0.0
    weight_decay: float = 0.0
    weight_decay_mode: str = "decoupled"
    cowclip_ratio: Optional[float] = None
    cowclip_min_norm: float = 1e-5

    def __post_init__(self):
        def normalise(field, value):
            object.__setattr__(self, field, value)

        normalise("power", arguments.number("power", self.power, 0.0))
        arguments.choice("estimate", self.estimate, ESTIMATES)
        normalise("min_scale", arguments.number("min_scale", self.min_scale, 0.0))
        normalise("max_scale", arguments.number("max_scale", self.max_scale, 0.0, inclusive=False, allow_none=True))
        if self.max_scale is not None and self.max_scale < self.min_scale:
            raise ValueError(f"`max_scale` ({self.max_scale}) must be >= `min_scale` ({self.min_scale}).")
        normalise("warmup_steps", arguments.integer("warmup_steps", self.warmup_steps))
        normalise("tail_id_threshold", arguments.number("tail_id_threshold", self.tail_id_threshold, 0.0))
        normalise("weight_decay", arguments.number("weight_decay", self.weight_decay, 0.0))
        arguments.choice("weight_decay_mode", self.weight_decay_mode, WEIGHT_DECAY_MODES)
        normalise("cowclip_ratio", arguments.number("cowclip_ratio", self.cowclip_ratio, 0.0, inclusive=False,
                                                    allow_none=True))
        normalise("cowclip_min_norm", arguments.number("cowclip_min_norm", self.cowclip_min_norm, 0.0))

    def config(self):
        """The optimizer arguments this rule was made from, but the counter optimizers' own (``counter_config``)."""
        return {"power": self.power, "estimate": self.estimate, "min_scale": self.min_scale,
                "max_scale": self.max_scale, "warmup_steps": self.warmup_steps, "weight_decay": self.weight_decay,
                "weight_decay_mode": self.weight_decay_mode}

    def counter_config(self):
        """The arguments of this rule that only the counter optimizers take."""
        return {"tail_id_threshold": self.tail_id_threshold, "cowclip_ratio": self.cowclip_ratio,
                "cowclip_min_norm": self.cowclip_min_norm}

    @property
    def clips(self):
        """Whether CowClip is on."""
        return self.cowclip_ratio is not None

    def adjusting(self, step):
        """False during warm-up, when every scale is 1."""
        return step > self.warmup_steps

    def rate_scale(self, xp, count, frequency, step):
        """``clip(f ** -power, min_scale, max_scale)`` per row, 1 for tail rows and in warm-up."""
        f = frequency if self.estimate == "frequency" else count
        scale = xp.maximum(xp.pow(f, -self.power), self.min_scale)
        if self.max_scale is not None:
            scale = xp.minimum(scale, self.max_scale)
        adjusted = xp.logical_and(count > self.tail_id_threshold, self.adjusting(step))
        return xp.where(adjusted, scale, xp.ones_like(scale))

    def decay_factor(self, xp, decay_rate, p, step):
        """``max(0, 1 - decay_rate * weight_decay) ** r`` with ``r = max(1, 1/p)`` (1 in warm-up)."""
        missed_steps = xp.maximum(1.0 / p, 1.0)
        missed_steps = xp.where(self.adjusting(step), missed_steps, xp.ones_like(missed_steps))
        base = xp.maximum(1.0 - decay_rate * self.weight_decay, 0.0)
        return xp.pow(base, missed_steps)

    def clip_factor(self, xp, gradient_norm, weight_norm, occurrences):
        """CowClip's ``min(1, clip / ||g||)`` per row, ``clip = o * max(r * ||w||, zeta)``."""
        clip = occurrences * xp.maximum(self.cowclip_ratio * weight_norm, self.cowclip_min_norm)
        # Not min(1, clip / ||g||): a zero row with a zero bound would be 0 / 0, and a non-finite
        # norm must leave its row non-finite rather than clip it to a finite one.
        return xp.where(gradient_norm > clip, clip / gradient_norm, xp.ones_like(gradient_norm))

    def decay_rate(self, base_rate, row_rate):
        """The rate weight decay goes through: the base rate, or the row's rate for ``"l2"``."""
        return row_rate if self.weight_decay_mode == "l2" else base_rate
