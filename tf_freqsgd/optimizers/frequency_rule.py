"""The frequency-aware rate rule that every tf_freqsgd optimizer shares.

Notation, for one embedding table and one training step ``t = 1, 2, ...``:

* ``c_k``: the counter of row ``k``, one float32 per row. Each step in which row ``k`` appears adds
  its increment ``n_k``: the number of occurrences of ``k`` in the batch (``counting="occurrence"``)
  or 1 (``counting="presence"``, as FBGEMM counts). With a half-life ``h`` the counter decays
  between appearances, as FBGEMM's ``rowwise_adagrad_with_counter`` does:
  ``c_k <- n_k + 2**(-(t - s_k) / h) * c_k``, with ``s_k`` the step row ``k`` was last seen.
* ``N_t``: the counter a row present at every step would have: ``t`` without decay,
  ``(1 - 2**(-t/h)) / (1 - 2**(-1/h))`` with decay. ``p_k = c_k / N_t`` estimates the frequency.
* ``f_k``: the quantity the rate follows: ``p_k`` (``estimate="frequency"``, FA-SGD with an online
  estimate) or the raw ``c_k`` (``estimate="count"``, FBGEMM's counter mode, ``lr / sqrt(c_k)`` at
  power 0.5).
* Rate scale: ``scale_k = clip(f_k ** -power, min_scale, max_scale)``; 1 during the first
  ``warmup_steps`` steps and for tail rows (``c_k <= tail_id_threshold``).
* Weight decay is applied lazily, to the rows of the batch only, and so catches up on the steps the
  row was absent: ``rho_k = max(0, 1 - eta_wd * weight_decay) ** r_k`` with ``r_k = max(1, 1/p_k)``
  (1 during warm-up), ``eta_wd`` the base rate (``"decoupled"``) or the row's own rate (``"l2"``).
  FBGEMM scales its decay by ``halflife / c_k``, the same inverse frequency up to a constant.
"""

import dataclasses
import math
from typing import Optional

import tensorflow as tf

from tf_freqsgd.dynamic.tables import gather_rows

ESTIMATES = ("frequency", "count")
COUNTING_MODES = ("occurrence", "presence")
WEIGHT_DECAY_MODES = ("decoupled", "l2")


def _require(condition, message):
    if not condition:
        raise ValueError(message)


def _require_choice(name, value, choices):
    _require(value in choices, f"`{name}` must be one of {choices}; got {value!r}.")


def _require_number(name, value, minimum=0.0, inclusive=True, allow_none=False):
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= minimum if inclusive else value > minimum)
    bound = ">=" if inclusive else ">"
    _require(ok, f"`{name}` must be a finite number {bound} {minimum}; got {value!r}.")


def check_learning_rate(learning_rate):
    """Numbers must be finite and >= 0; schedules and callables are checked by Keras."""
    if isinstance(learning_rate, (int, float)):
        _require_number("learning_rate", learning_rate)


@dataclasses.dataclass(frozen=True)
class FrequencyRule:
    """How a row's frequency turns into its rate scale and weight-decay factor."""

    power: float = 0.5
    estimate: str = "frequency"
    min_scale: float = 0.0
    max_scale: Optional[float] = None
    warmup_steps: int = 0
    tail_id_threshold: float = 0.0
    weight_decay: float = 0.0
    weight_decay_mode: str = "decoupled"

    def __post_init__(self):
        _require_number("power", self.power)
        _require_choice("estimate", self.estimate, ESTIMATES)
        _require_number("min_scale", self.min_scale)
        _require_number("max_scale", self.max_scale, minimum=0.0, inclusive=False, allow_none=True)
        _require(
            self.max_scale is None or self.max_scale >= self.min_scale,
            f"`max_scale` ({self.max_scale}) must be >= `min_scale` ({self.min_scale}).",
        )
        _require(
            isinstance(self.warmup_steps, int) and self.warmup_steps >= 0,
            f"`warmup_steps` must be an integer >= 0; got {self.warmup_steps!r}.",
        )
        _require_number("tail_id_threshold", self.tail_id_threshold)
        _require_number("weight_decay", self.weight_decay)
        _require_choice("weight_decay_mode", self.weight_decay_mode, WEIGHT_DECAY_MODES)

    def adjusting(self, step):
        """False during warm-up, when every scale is 1."""
        return step > self.warmup_steps

    def rate_scale(self, count, frequency, step):
        """``clip(f ** -power, min_scale, max_scale)`` per row, 1 for tail rows and in warm-up."""
        f = frequency if self.estimate == "frequency" else count
        scale = tf.pow(f, -self.power)
        scale = tf.maximum(scale, self.min_scale)
        if self.max_scale is not None:
            scale = tf.minimum(scale, self.max_scale)
        adjusted = tf.logical_and(count > self.tail_id_threshold, self.adjusting(step))
        return tf.where(adjusted, scale, tf.ones_like(scale))

    def decay_factor(self, decay_rate, p, step):
        """``max(0, 1 - decay_rate * weight_decay) ** r`` with ``r = max(1, 1/p)`` (1 in warm-up)."""
        missed_steps = tf.maximum(1.0 / p, 1.0)
        missed_steps = tf.where(self.adjusting(step), missed_steps, tf.ones_like(missed_steps))
        base = tf.maximum(1.0 - decay_rate * self.weight_decay, 0.0)
        return tf.pow(base, missed_steps)

    def decay_rate(self, base_rate, row_rate):
        """The rate weight decay goes through: the base rate, or the row's rate for ``"l2"``."""
        return row_rate if self.weight_decay_mode == "l2" else base_rate


@dataclasses.dataclass(frozen=True)
class CounterSpec:
    """What a row's counter adds per step, how it decays, and (dynamic tables only) the count an
    id needs before it gets a row."""

    counting: str = "occurrence"
    halflife: Optional[float] = None
    admission_count: Optional[float] = None

    def __post_init__(self):
        _require_choice("counting", self.counting, COUNTING_MODES)
        _require_number("counter_halflife", self.halflife, 0.0, inclusive=False, allow_none=True)
        _require_number("admission_count", self.admission_count, 0.0, inclusive=False, allow_none=True)

    def normalizer(self, step):
        """``N_t``: the counter of a row present at every one of the ``t`` steps."""
        t = tf.cast(step, tf.float32)
        if self.halflife is None:
            return t
        # (1 - 2^(-t/h)) / (1 - 2^(-1/h)), with expm1: 1 - 2^(-1/h) cancels badly in float32.
        decay_rate = math.log(2.0) / self.halflife
        return -tf.math.expm1(-decay_rate * t) / -math.expm1(-decay_rate)

    def decayed(self, counts, last_seen, step):
        """``c · 2^(-(t - s)/h)``: counts last updated at steps ``last_seen``, decayed to step ``t``
        (as they are without a half-life)."""
        if self.halflife is None:
            return counts
        elapsed = tf.cast(step, tf.float32) - tf.cast(last_seen, tf.float32)
        return tf.exp(-(math.log(2.0) / self.halflife) * elapsed) * counts

    def create_slots(self, optimizer, variable):
        """A float32 counter per row, and the int32 step each row was last seen when it decays."""
        if not variable.shape.rank:
            return {}
        slots = {"counter": optimizer.add_row_variable(variable, "counter")}
        if self.halflife is not None:
            slots["last_seen"] = optimizer.add_row_variable(variable, "last_seen", tf.int32)
        return slots

    def observe(self, slots, ids, occurrences, step):
        """Counts this step's rows ``ids`` (unique); returns their counts and frequencies."""
        counts = self.update(slots["counter"], slots.get("last_seen"), ids, occurrences, step)
        return counts, counts / self.normalizer(step)

    def update(self, counter, last_seen, ids, occurrences, step):
        """Adds this step's increments to the rows ``ids`` (unique) and returns their new counts."""
        increment = occurrences if self.counting == "occurrence" else tf.ones_like(occurrences)
        previous = gather_rows(counter, ids)
        if self.halflife is None:
            counts = previous + increment
        else:
            counts = increment + self.decayed(previous, gather_rows(last_seen, ids), step)
            last_seen.scatter_update(
                tf.IndexedSlices(tf.fill(tf.shape(ids), tf.cast(step, last_seen.dtype)), ids)
            )
        counter.scatter_update(tf.IndexedSlices(counts, ids))
        return counts


def deduplicate(gradient):
    """Sums the rows of repeated ids in one pass: ``(unique ids, summed rows, occurrences)``."""
    ids, positions = tf.unique(gradient.indices)
    num_unique = tf.shape(ids)[0]
    rows = tf.math.unsorted_segment_sum(gradient.values, positions, num_unique)
    occurrences = tf.math.unsorted_segment_sum(
        tf.ones_like(positions, dtype=tf.float32), positions, num_unique
    )
    return ids, rows, occurrences


def per_row(values, like):
    """Reshapes a per-row vector so it broadcasts over the trailing dimensions of ``like``."""
    return tf.reshape(values, [-1] + [1] * (like.shape.rank - 1))
