"""The per-row counter of ``CounterSGD`` and ``RowwiseAdagradCounter``: what it adds, how it
decays, and how it is stored so that it stays exact on long runs.

Notation, for one table and the step ``t = 1, 2, ...`` being applied: each step in which row ``k``
appears adds its increment ``n_k`` to the counter ``c_k``: its number of occurrences in the batch
(``counting="occurrence"``) or 1 (``"presence"``, as FBGEMM counts). With a half-life ``h`` the
counter decays between appearances, as FBGEMM's ``rowwise_adagrad_with_counter`` does:
``c_k <- n_k + 2**(-(t - s_k) / h) * c_k``, ``s_k`` the step row ``k`` was last seen.
``N_t`` is the counter of a row present at every step: ``t`` without decay,
``(1 - 2**(-t/h)) / (1 - 2**(-1/h))`` with decay; ``p_k = c_k / N_t`` estimates the frequency.

Storage (``counter_state_dtypes``), chosen so that no count freezes and no step wraps:

* Without a half-life, counts are integers, kept in one int32 per row (4 B): a value ``>= 0`` is
  the count itself, exact to ``2**31``; a negative value holds, in its low 31 bits, the float32
  bits of a count ``>= 2**31``. Past ``2**31`` a row's increments are added with unbiased
  rounding to the nearest float32s (dithered by a hash of the row and the step), so the count
  keeps growing at the right rate with a relative error below ``2**-23``: a float32 counter froze
  at ``2**24``.
* With a half-life, the counter is a real number, kept as one float64 per row (8 B) that needs no
  last-seen step: ``mu_k = ln(c_k) + s_k * r``, the log-count referred to step 0, with
  ``r = ln(2) / h``. At step ``t`` the decayed count is ``exp(mu_k - t * r)``; an appearance stores
  ``mu_k <- ln(n_k + exp(mu_k - t * r)) + t * r``. Nothing wraps; ``mu_k`` grows as ``t * r``, so
  the count's relative error is about ``3e-16 * t / h`` and its absolute error below
  ``5e-16 * t * n`` (``5e-4 * n`` at step ``2**40``): no increment is lost.
  (An int32 last-seen step wrapped at step ``2**31``; a float32 count froze at ``2**24``.)

The update reads and writes the batch's rows only. Its statement for the fused kernels is
``cc/kernels/counter_rule.h``; the two agree to float rounding.
"""

import dataclasses
import math
from typing import Optional

import numpy as np

from tf_freqsgd import arguments

COUNTING_MODES = ("occurrence", "presence")
# Counts below this are stored as themselves; from it on, as float32 bits under the sign bit.
EXACT_COUNT_LIMIT = 2**31
# A longer half-life would let a decayed count outgrow float64's exact integers.
MAX_HALFLIFE = 2.0**32
# A row never seen: a count of 0.
NEVER_SEEN = -np.inf
_LN2 = math.log(2.0)
_SIGN_BIT = -(2**31)


def dither_bits(xp, ids, step):
    """A 32-bit hash of (row id, step), as uint64 in ``[0, 2**32)``: splitmix64's finaliser."""
    def shifted(x, bits):
        return xp.bitwise_xor(x, xp.right_shift(x, xp.constant(bits, xp.uint64)))

    x = xp.cast(ids, xp.uint64) * xp.constant(0x9E3779B97F4A7C15, xp.uint64) + xp.cast(step, xp.uint64)
    x = shifted(x, 30) * xp.constant(0xBF58476D1CE4E5B9, xp.uint64)
    x = shifted(x, 27) * xp.constant(0x94D049BB133111EB, xp.uint64)
    return xp.right_shift(shifted(x, 31), xp.constant(32, xp.uint64))


def round_unbiased(xp, values, dither):
    """float64 ``values`` to float32: the float32 below or above, the upper one with probability
    equal to the distance from the lower one (in units of their gap), decided by ``dither``."""
    below = xp.cast(values, xp.float32)
    below = xp.where(xp.cast(below, xp.float64) > values, xp.nextafter(below, xp.full_like(below, 0.0)), below)
    above = xp.nextafter(below, xp.full_like(below, np.inf))
    fraction = (values - xp.cast(below, xp.float64)) / (xp.cast(above, xp.float64) - xp.cast(below, xp.float64))
    return xp.where(xp.cast(dither, xp.float64) * 2.0**-32 < fraction, above, below)


def decode_counts(xp, codes):
    """The counts (float64) held by int32 counter ``codes``."""
    beyond = xp.bitcast(xp.bitwise_and(codes, xp.constant(0x7FFFFFFF, xp.int32)), xp.float32)
    return xp.where(codes >= 0, xp.cast(codes, xp.float64), xp.cast(beyond, xp.float64))


def encode_counts(xp, counts, dither):
    """int32 codes of float64 integer ``counts``; ``dither`` rounds those beyond ``2**31``."""
    exact = xp.cast(xp.minimum(counts, float(EXACT_COUNT_LIMIT - 1)), xp.int32)
    beyond = xp.bitwise_or(xp.bitcast(round_unbiased(xp, counts, dither), xp.int32), xp.constant(_SIGN_BIT, xp.int32))
    return xp.where(counts < EXACT_COUNT_LIMIT, exact, beyond)


def decode_counts_numpy(codes):
    """``decode_counts`` for NumPy arrays (checkpoint readers, tests)."""
    codes = np.asarray(codes, np.int32)
    beyond = (codes & np.int32(0x7FFFFFFF)).view(np.float32).astype(np.float64)
    return np.where(codes >= 0, codes.astype(np.float64), beyond)


def log_counts_numpy(counts, step, halflife):
    """The stored form of decayed ``counts`` as seen at ``step`` (see the module docstring)."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(counts, np.float64)) + step * (_LN2 / float(np.float32(halflife)))


def encode_counts_numpy(counts):
    """int32 codes of ``counts`` (beyond ``2**31``: the nearest float32), to set a counter's state."""
    counts = np.asarray(counts, np.float64)
    beyond = counts.astype(np.float32).view(np.int32) | np.int32(_SIGN_BIT)
    return np.where(counts < EXACT_COUNT_LIMIT, np.minimum(counts, EXACT_COUNT_LIMIT - 1).astype(np.int32), beyond)


@dataclasses.dataclass(frozen=True)
class CounterSpec:
    """What a row's counter adds per step, how it decays, and (dynamic tables only) the count an
    id needs before it gets a row."""

    counting: str = "occurrence"
    halflife: Optional[float] = None
    admission_count: Optional[float] = None

    def __post_init__(self):
        arguments.choice("counting", self.counting, COUNTING_MODES)
        halflife = arguments.number("counter_halflife", self.halflife, 0.0, inclusive=False, maximum=MAX_HALFLIFE,
                                    allow_none=True)
        object.__setattr__(self, "halflife", halflife)
        object.__setattr__(self, "admission_count", arguments.number(
            "admission_count", self.admission_count, 0.0, inclusive=False, allow_none=True))

    def config(self):
        return {"counting": self.counting, "counter_halflife": self.halflife, "admission_count": self.admission_count}

    @property
    def counter_dtype(self):
        """int32 count codes, or float64 log-counts with a half-life (a NumPy dtype name)."""
        return "int32" if self.halflife is None else "float64"

    @property
    def initial_value(self):
        """The stored value of a row never seen."""
        return 0 if self.halflife is None else NEVER_SEEN

    @property
    def _decay_rate(self):
        # ln 2 / h with h rounded to float32, as the fused op's attribute holds it.
        return _LN2 / float(np.float32(self.halflife))

    def normalizer(self, xp, step):
        """``N_t`` (float64): the counter of a row present at every one of the ``t`` steps."""
        t = xp.cast(step, xp.float64)
        if self.halflife is None:
            return t
        # (1 - 2^(-t/h)) / (1 - 2^(-1/h)), with expm1: 1 - 2^(-1/h) cancels badly.
        return -xp.expm1(-self._decay_rate * t) / -math.expm1(-self._decay_rate)

    def _reference(self, xp, step):
        """``t * r``: the log-count a count of 1 seen at step ``t`` is stored as."""
        return xp.cast(step, xp.float64) * self._decay_rate

    def current_counts(self, xp, stored, step):
        """The counts (float64) held by ``stored`` counter values, decayed to step ``step``."""
        if self.halflife is None:
            return decode_counts(xp, stored)
        return xp.exp(stored - self._reference(xp, step))

    def increments(self, xp, occurrences):
        """``n_k`` (float64) from the batch's occurrence counts."""
        occurrences = xp.cast(occurrences, xp.float64)
        return occurrences if self.counting == "occurrence" else xp.ones_like(occurrences)

    def counted(self, xp, stored, occurrences, step, ids):
        """One step's counting of rows ``ids`` (unique; their stored values ``stored``, their
        occurrences in the batch): ``(new stored values, counts, frequencies)``; the counts float64
        (before the stored rounding past ``2**31``), the frequencies float32."""
        counts = self.current_counts(xp, stored, step) + self.increments(xp, occurrences)
        if self.halflife is None:
            new_stored = encode_counts(xp, counts, dither_bits(xp, ids, step))
        else:
            new_stored = xp.log(counts) + self._reference(xp, step)
        return new_stored, counts, xp.cast(counts / self.normalizer(xp, step), xp.float32)


def fused_op_attributes(rule, counter_spec, weight_decay):
    """The fused op's attributes for ``rule`` and ``counter_spec`` (``cc/ops/counter_ops.cc``);
    ``weight_decay``: the decay the variable gets (0 when it is excluded)."""
    return {
        "count_occurrences": counter_spec.counting == "occurrence",
        "halflife": counter_spec.halflife or 0.0,
        "estimate_frequency": rule.estimate == "frequency",
        "power": rule.power,
        "min_scale": rule.min_scale,
        "max_scale": -1.0 if rule.max_scale is None else rule.max_scale,
        "warmup_steps": rule.warmup_steps,
        "tail_id_threshold": rule.tail_id_threshold,
        "weight_decay": weight_decay,
        "decoupled_weight_decay": rule.weight_decay_mode == "decoupled",
    }
