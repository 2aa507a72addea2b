"""Keras plumbing shared by the frequency-aware optimizers.

A tf_keras optimizer normally de-duplicates ``IndexedSlices`` before ``update_step``, which loses
how often each id occurred in the batch. These optimizers keep the raw gradient instead and
de-duplicate inside ``update_step`` with ``frequency_rule.deduplicate``, which returns the
occurrence counts in the same pass. Every sparse update touches the rows of the batch only.

Gradients are checked before any variable is written, so bad input never corrupts state:
a non-finite gradient value, an id outside ``[0, rows)``, or a dtype that does not match the
variable raises an error naming the variable. (Under ``LossScaleOptimizer`` a non-finite step is
skipped by the loss scaler before it reaches these checks, as usual.)
"""

import tensorflow as tf
import tf_keras
from tensorflow.python.ops import control_flow_util

from tf_freqsgd import ops as fused
from tf_freqsgd.dynamic import tables as dynamic
from tf_freqsgd.optimizers import frequency_rule

_INDEX_DTYPES = (tf.int32, tf.int64)
_FUSED_DTYPES = (tf.float32, tf.float16, tf.bfloat16)


def num_rows(variable):
    """The row count without reading the table: a read before a scatter makes TF copy the table."""
    if variable.shape.rank and variable.shape[0] is not None:
        return variable.shape[0]
    return tf.raw_ops.VariableShape(input=variable.handle)[0]


def _all_finite(values):
    # 0 * x is 0 for every finite x and NaN for inf or NaN; the sum cannot overflow. One
    # multi-threaded reduction: a sixth of check_numerics' time on an 8,192 x 64 gradient.
    return tf.math.is_finite(tf.reduce_sum(values * tf.zeros([], values.dtype)))


def _check_gradient(optimizer_name, gradient, variable):
    """The assertions on one gradient: finite values, and ids inside the table."""
    what = f"dynamic table '{variable.params.name}'" if dynamic.is_dynamic(variable) else f"variable '{variable.name}'"
    where = f"{optimizer_name}: gradient for {what}"
    sparse = isinstance(gradient, tf.IndexedSlices)
    values = gradient.values if sparse else gradient
    if values.dtype.base_dtype != variable.dtype.base_dtype:
        raise TypeError(f"{where} has dtype {values.dtype.name}; expected {variable.dtype.name}.")
    finite = tf.debugging.Assert(_all_finite(values), [f"{where} has a non-finite value."])
    # A dynamic embedding's gradient indexes the batch's own ids, as TFRA's lookup made them.
    if not sparse or dynamic.is_dynamic(variable):
        return [finite]
    if gradient.indices.dtype not in _INDEX_DTYPES:
        raise TypeError(f"{where} has ids of dtype {gradient.indices.dtype.name}; expected int32 or int64.")
    ids = gradient.indices
    smallest, largest = tf.reduce_min(ids), tf.reduce_max(ids)
    rows = tf.cast(num_rows(variable), ids.dtype)
    in_range = tf.debugging.Assert(
        tf.logical_or(tf.size(ids) == 0, tf.logical_and(smallest >= 0, largest < rows)),
        [f"{where} has an id outside [0, {variable.shape[0]}); smallest and largest id:", smallest, largest],
    )
    return [finite, in_range]


def gradient_checks(optimizer_name, grads_and_vars):
    """The checks of every gradient; the whole update must wait for all of them."""
    checks = []
    for gradient, variable in grads_and_vars:
        if gradient is not None:
            checks.extend(_check_gradient(optimizer_name, gradient, variable))
    return checks


class FrequencyAwareOptimizer(tf_keras.optimizers.Optimizer):
    """Base of the optimizers whose per-row rate follows a ``FrequencyRule``.

    Subclasses create their per-variable state in ``_create_slots`` and implement
    ``_observe(slots, ids, occurrences)``, which returns each row's count and estimated frequency,
    ``_apply_sparse(variable, slots, ids, rows, counts, frequency)`` (unique ids, summed rows)
    and ``_apply_dense(variable, slots, gradient)``.
    """

    def __init__(self, learning_rate, rule, name, jit_compile=False, **kwargs):
        super().__init__(name=name, weight_decay=None, jit_compile=jit_compile, **kwargs)
        frequency_rule.check_learning_rate(learning_rate)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.rule = rule
        # Keras' own weight decay sweeps whole tables every step; this rule's decay is applied per
        # row in update_step. Kept on `weight_decay` so get_config and Keras tooling see it.
        self.weight_decay = rule.weight_decay

    def build(self, var_list):
        if any(dynamic.is_dynamic(variable) for variable in var_list) and not hasattr(self, "_bp_v2"):
            # TFRA's wrapper (it sets _bp_v2) reads the batch's rows from the hash tables before
            # update_step and writes them back after; passing the optimizer unwrapped is the same.
            dynamic.dynamic_embedding().DynamicEmbeddingOptimizer(self)
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self._slots = [self._create_slots(variable) for variable in var_list]
        # Each dynamic embedding's TFRA trainable and this optimizer's width-1 tables for it, by
        # table name: what eviction and the size reports work on.
        # (NoDependency: the tables are tracked once, where they are made.)
        self.dynamic_tables = self._no_dependency({
            variable.params.name: (variable, slots)
            for variable, slots in zip(var_list, self._slots) if dynamic.is_dynamic(variable)
        })
        self._built = True

    def _create_slots(self, variable):
        raise NotImplementedError

    def add_row_variable(self, model_variable, name, dtype=tf.float32, initial_value=0, per_row=True):
        """One optimizer value per row of ``model_variable`` (a scalar if not ``per_row``), placed with it:
        for a dynamic embedding, a width-1 TFRA table keyed by its ids."""
        if per_row and dynamic.is_dynamic(model_variable):
            return dynamic.row_table(self, model_variable, name, dtype, initial_value)
        shape = [model_variable.shape[0]] if per_row else []
        strategy = tf.distribute.get_strategy()
        with strategy.extended.colocate_vars_with(model_variable):
            variable = tf.Variable(
                tf.broadcast_to(tf.cast(initial_value, dtype), shape),
                name=f"{name}/{model_variable._shared_name}",
                trainable=False,
            )
        self._variables.append(variable)
        return variable

    def _internal_apply_gradients(self, grads_and_vars):
        # Every op of the update, the step counter's included, waits for every check: a bad
        # gradient for one variable leaves all of them untouched. Here rather than in
        # apply_gradients, which TFRA's wrapper bypasses.
        grads_and_vars = list(grads_and_vars)
        self._unadmitted = self._no_dependency([])
        with tf.control_dependencies(gradient_checks(self.name, grads_and_vars)):
            iteration = super()._internal_apply_gradients(grads_and_vars)
        # After TFRA has written the batch's rows back: drop those of ids not yet admitted.
        removals = [dynamic.remove_rows(variable, keys) for variable, keys in self._unadmitted]
        with tf.control_dependencies(removals):
            return tf.identity(iteration)

    def _deduplicate_sparse_grad(self, grads):
        # update_step de-duplicates itself: it needs the occurrence counts.
        return grads

    def _apply_weight_decay(self, variables):
        # Applied per row inside update_step; Keras' version would sweep whole tables.
        pass

    def _decays(self, variable):
        return self.rule.weight_decay > 0 and self._use_weight_decay(variable)

    def decay_factor(self, variable, row_rate, frequency):
        """Per-row weight-decay factor for a sparse update, or None when nothing decays."""
        if not self._decays(variable):
            return None
        decay_rate = self.rule.decay_rate(self.base_rate(), row_rate)
        return self.rule.decay_factor(decay_rate, frequency, self.step)

    def dense_decay_factor(self, variable, rate):
        """``max(0, 1 - rate * weight_decay)`` for a dense update, or None."""
        if not self._decays(variable):
            return None
        return tf.maximum(1.0 - self.rule.decay_rate(self.base_rate(), rate) * self.rule.weight_decay, 0.0)

    @property
    def step(self):
        """The 1-based number of the step being applied."""
        return self.iterations + 1

    def update_step(self, gradient, variable):
        slots = self._slots[self._index_dict[self._var_key(variable)]]
        if dynamic.is_dynamic(variable):
            slots = dynamic.bind_to_batch(slots, variable)
            gradient = dynamic.with_row_shape(gradient, variable)
        if isinstance(gradient, tf.IndexedSlices):
            if self._apply_fused(variable, slots, gradient):
                return
            ids, rows, occurrences = frequency_rule.deduplicate(gradient)
            counts, frequency = self._observe(slots, ids, occurrences)
            self._apply_sparse(variable, slots, ids, rows, counts, frequency)
            admission = getattr(self, "counter_spec", None) and self.counter_spec.admission_count
            if admission and dynamic.is_dynamic(variable):
                below = tf.boolean_mask(ids, counts < admission)
                self._unadmitted.append((variable, tf.gather(variable.ids, below)))
        else:
            self._apply_dense(variable, slots, gradient)

    def _apply_fused(self, variable, slots, gradient):
        """Applies a sparse step with the fused op and returns True, or returns False."""
        return False

    def fused_ops_for(self, variable):
        """The fused-op module when it can update ``variable`` here, else None (pure-TF path).

        Not inside XLA (it cannot compile a custom op), and for GPU variables only when the library
        holds the CUDA kernels.
        """
        if variable.dtype.base_dtype not in _FUSED_DTYPES or dynamic.is_dynamic(variable):
            return None
        if "GPU" in (variable.device or "").upper() and not fused.gpu_kernels_available():
            return None
        if control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
            return None
        return fused.fused_ops()

    def fused_rule_attributes(self, variable):
        """The op attributes of this optimizer's counter and rule."""
        rule, counter = self.rule, self.counter_spec
        return {
            "count_occurrences": counter.counting == "occurrence",
            "halflife": counter.halflife or 0.0,
            "estimate_frequency": rule.estimate == "frequency",
            "power": rule.power,
            "min_scale": rule.min_scale,
            "max_scale": -1.0 if rule.max_scale is None else rule.max_scale,
            "warmup_steps": rule.warmup_steps,
            "tail_id_threshold": rule.tail_id_threshold,
            "weight_decay": rule.weight_decay if self._decays(variable) else 0.0,
            "decoupled_weight_decay": rule.weight_decay_mode == "decoupled",
        }

    @staticmethod
    def counter_handles(slots):
        """The counter's handle and, with a half-life, the last-seen steps' (a list of 0 or 1)."""
        return slots["counter"].handle, [slots["last_seen"].handle] if "last_seen" in slots else []

    def base_rate(self):
        return tf.cast(self.learning_rate, tf.float32)

    def get_config(self):
        config = super().get_config()
        rule = self.rule
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter(self._learning_rate),
                "power": rule.power,
                "estimate": rule.estimate,
                "min_scale": rule.min_scale,
                "max_scale": rule.max_scale,
                "warmup_steps": rule.warmup_steps,
                "weight_decay": rule.weight_decay,
                "weight_decay_mode": rule.weight_decay_mode,
            }
        )
        return config


def write_rows(variable, ids, new_rows):
    variable.scatter_update(tf.IndexedSlices(tf.cast(new_rows, variable.dtype), ids))
