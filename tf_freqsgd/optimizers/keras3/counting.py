"""The counters of the Keras 3 optimizers: the TensorFlow mixin, and the JAX backend's row-by-row
counting of dense gradients."""

from tf_freqsgd.optimizers.counting import CountsRows
from tf_freqsgd.optimizers.keras3.base import ON_TENSORFLOW


class KerasCountsRows(CountsRows):
    def _observe_rows(self, xp, slots, present):
        """JAX: counts every row present (once: a dense gradient tells nothing of occurrences)."""
        counter = slots["counter"]
        stored = counter.value
        rows = stored.shape[0]
        new_stored, counts, frequency = self.counter_spec.counted(
            xp, stored, xp.ones_like(present, dtype=xp.float64), self.step, xp.arange(rows))
        self.assign(counter, xp.where(present, new_stored, stored))
        return xp.cast(counts, xp.float32), frequency

    def counts(self, variable, ids=None):
        if ON_TENSORFLOW:
            return super().counts(variable, ids)
        stored = self.row_state(variable)["counter"].value
        if ids is not None:
            stored = stored[ids]
        return self.counter_spec.current_counts(self.xp, stored, self.applied_steps.value)

    def frequencies(self, variable, ids=None):
        if ON_TENSORFLOW:
            return super().frequencies(variable, ids)
        xp = self.xp
        return xp.cast(self.counts(variable, ids) / self.counter_spec.normalizer(xp, self.applied_steps.value),
                       xp.float32)
