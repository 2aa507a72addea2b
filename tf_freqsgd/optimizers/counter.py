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
import tensorflow as tf

from tf_freqsgd import arguments
from tf_freqsgd.dynamic.tables import gather_rows, keys_of

COUNTING_MODES = ("occurrence", "presence")
# Counts below this are stored as themselves; from it on, as float32 bits under the sign bit.
EXACT_COUNT_LIMIT = 2**31
# A longer half-life would let a decayed count outgrow float64's exact integers.
MAX_HALFLIFE = 2.0**32
# A row never seen: a count of 0.
NEVER_SEEN = -np.inf
_LN2 = math.log(2.0)
_SIGN_BIT = np.int32(-(2**31))


def dither_bits(ids, step):
    """A 32-bit hash of (row id, step), as uint64 in ``[0, 2**32)``: splitmix64's finaliser."""
    x = tf.cast(ids, tf.uint64) * tf.constant(0x9E3779B97F4A7C15, tf.uint64) + tf.cast(step, tf.uint64)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(30, tf.uint64)))
    x = x * tf.constant(0xBF58476D1CE4E5B9, tf.uint64)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(27, tf.uint64)))
    x = x * tf.constant(0x94D049BB133111EB, tf.uint64)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(31, tf.uint64)))
    return tf.bitwise.right_shift(x, tf.constant(32, tf.uint64))


def round_unbiased(values, dither):
    """float64 ``values`` to float32: the float32 below or above, the upper one with probability
    equal to the distance from the lower one (in units of their gap), decided by ``dither``."""
    below = tf.cast(values, tf.float32)
    below = tf.where(tf.cast(below, tf.float64) > values, tf.math.nextafter(below, tf.zeros_like(below)), below)
    above = tf.math.nextafter(below, tf.fill(tf.shape(below), np.float32(np.inf)))
    fraction = (values - tf.cast(below, tf.float64)) / (tf.cast(above, tf.float64) - tf.cast(below, tf.float64))
    return tf.where(tf.cast(dither, tf.float64) * 2.0**-32 < fraction, above, below)


def decode_counts(codes):
    """The counts (float64) held by int32 counter ``codes``."""
    beyond = tf.bitcast(tf.bitwise.bitwise_and(codes, tf.constant(0x7FFFFFFF, tf.int32)), tf.float32)
    return tf.where(codes >= 0, tf.cast(codes, tf.float64), tf.cast(beyond, tf.float64))


def encode_counts(counts, dither):
    """int32 codes of float64 integer ``counts``; ``dither`` rounds those beyond ``2**31``."""
    exact = tf.cast(tf.minimum(counts, EXACT_COUNT_LIMIT - 1), tf.int32)
    beyond = tf.bitwise.bitwise_or(tf.bitcast(round_unbiased(counts, dither), tf.int32), _SIGN_BIT)
    return tf.where(counts < EXACT_COUNT_LIMIT, exact, beyond)


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
    beyond = counts.astype(np.float32).view(np.int32) | _SIGN_BIT
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

    @property
    def counter_dtype(self):
        """int32 count codes, or float64 log-counts with a half-life."""
        return tf.int32 if self.halflife is None else tf.float64

    @property
    def _decay_rate(self):
        # ln 2 / h with h rounded to float32, as the fused op's attribute holds it.
        return _LN2 / float(np.float32(self.halflife))

    def normalizer(self, step):
        """``N_t`` (float64): the counter of a row present at every one of the ``t`` steps."""
        t = tf.cast(step, tf.float64)
        if self.halflife is None:
            return t
        # (1 - 2^(-t/h)) / (1 - 2^(-1/h)), with expm1: 1 - 2^(-1/h) cancels badly.
        return -tf.math.expm1(-self._decay_rate * t) / -math.expm1(-self._decay_rate)

    def create_slots(self, optimizer, variable):
        """The per-row counter of ``variable`` (none for a scalar)."""
        if not variable.shape.rank:
            return {}
        initial_value = 0 if self.halflife is None else NEVER_SEEN
        return {"counter": optimizer.add_row_variable(variable, "counter", self.counter_dtype, initial_value)}

    def _reference(self, step):
        """``t * r``: the log-count a count of 1 seen at step ``t`` is stored as."""
        return tf.cast(step, tf.float64) * self._decay_rate

    def current_counts(self, slots, ids, step):
        """The counts (float64) of rows ``ids``, decayed to step ``step`` with a half-life. Read-only."""
        stored = gather_rows(slots["counter"], ids)
        if self.halflife is None:
            return decode_counts(stored)
        return tf.exp(stored - self._reference(step))

    def increments(self, occurrences):
        """``n_k`` (float64) from the batch's occurrence counts."""
        occurrences = tf.cast(occurrences, tf.float64)
        return occurrences if self.counting == "occurrence" else tf.ones_like(occurrences)

    def observe(self, slots, ids, occurrences, step):
        """Counts this step's rows ``ids`` (unique); returns their counts and frequencies (float32)."""
        counts = self.current_counts(slots, ids, step) + self.increments(occurrences)
        counter = slots["counter"]
        if self.halflife is None:
            stored = encode_counts(counts, dither_bits(keys_of(counter, ids), step))
        else:
            stored = tf.math.log(counts) + self._reference(step)
        counter.scatter_update(tf.IndexedSlices(stored, ids))
        return tf.cast(counts, tf.float32), tf.cast(counts / self.normalizer(step), tf.float32)
