"""What the optimizers that keep a counter per row (``CounterSGD``, ``RowwiseAdagradCounter``) share,
in every TensorFlow front: the counter's slot, its update on the pure-TF path, admission on dynamic
tables, reading the counts and frequencies, and the settings a checkpoint of them records.

The front provides ``row_state(variable)`` (TensorFlow state), ``add_row_variables``, ``step``,
``applied_steps`` and ``_decays``."""

import tensorflow as tf

from tf_freqsgd.optimizers import row_storage as dynamic, step_checks
from tf_freqsgd.optimizers.array_ops import TENSORFLOW
from tf_freqsgd.optimizers.counter import fused_op_attributes


class CountsRows:
    """Mixin for a ``FrequencyAwareOptimizer`` whose frequencies are counted online."""

    def _create_frequency_slots(self, variable):
        return self._create_counter_slots(variable)

    def _create_counter_slots(self, variable, other_states=None):
        """The counter of ``variable``'s rows, with ``other_states`` (``{name: (dtype, initial value)}``)
        stored beside it (see ``add_row_variables``); a scalar variable has no rows to count."""
        if not tf.TensorShape(variable.shape).rank:
            return {}
        spec = self.counter_spec
        return self.add_row_variables(
            variable, {"counter": (tf.as_dtype(spec.counter_dtype), spec.initial_value), **(other_states or {})})

    def _observe(self, slots, ids, occurrences):
        counter = slots["counter"]
        # The dither of counts past 2**31 hashes the row's index where the update sees it (on a TFRA
        # table, its local row), as the fused op does.
        stored, counts, frequency = self.counter_spec.counted(
            TENSORFLOW, dynamic.gather_rows(counter, ids), occurrences, self.step, ids)
        counter.scatter_update(tf.IndexedSlices(stored, ids))
        return tf.cast(counts, tf.float32), frequency

    def _hold_back_unadmitted(self, variable, ids, counts):
        admission = self.counter_spec.admission_count
        if admission:
            below = tf.boolean_mask(ids, counts < admission)
            self._unadmitted.append((variable, tf.gather(variable.ids, below)))

    def fused_attributes(self, variable):
        """The fused op's attributes of this optimizer's counter and rule for ``variable``."""
        return fused_op_attributes(self.rule, self.counter_spec,
                                   self.rule.weight_decay if self._decays(variable) else 0.0)

    def counts(self, variable, ids=None):
        """The counters (float64) of rows ``ids`` of ``variable`` (every row of a fixed table when
        None), decayed to the last applied step with a half-life."""
        counter = self.row_state(variable)["counter"]
        if ids is None:
            if dynamic.is_table(counter):
                raise ValueError("counts of a dynamic table need the ids to read (its keys: "
                                 "tf_freqsgd.dynamic.table_counts).")
            ids = tf.range(step_checks.num_rows(variable), dtype=tf.int64)
        return self.counter_spec.current_counts(TENSORFLOW, dynamic.gather_rows(counter, ids), self.applied_steps)

    def frequencies(self, variable, ids=None):
        """The frequency estimates ``p = c / N_t`` (float32) of rows ``ids`` at the last applied step."""
        counts = self.counts(variable, ids)
        return tf.cast(counts / self.counter_spec.normalizer(TENSORFLOW, self.applied_steps), tf.float32)

    def batch_frequency(self, variable, ids):
        """The frequency estimate of each of ``ids`` (repeats allowed) that this optimizer's update of
        the step being trained will use, this batch's occurrences included. In-graph; read-only (the
        update itself counts)."""
        spec = self.counter_spec
        ids = tf.cast(tf.reshape(ids, [-1]), tf.int64)
        unique_ids, positions, occurrences = tf.unique_with_counts(ids)
        stored = dynamic.gather_rows(self.row_state(variable)["counter"], unique_ids)
        _, _, frequency = spec.counted(TENSORFLOW, stored, occurrences, self.step, unique_ids)
        return tf.gather(frequency, positions)

    def state_settings(self):
        spec = self.counter_spec
        return {**super().state_settings(), "counting": spec.counting, "counter_halflife": spec.halflife}

    def get_config(self):
        return {**super().get_config(), **self.counter_spec.config(), **self.rule.counter_config()}
