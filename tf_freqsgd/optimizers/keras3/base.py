"""Keras 3 plumbing shared by the frequency-aware optimizers (``keras.optimizers.Optimizer``).

On TensorFlow, Keras 3 hands ``update_step`` the ``tf.Variable`` behind each Keras variable and
``tf.IndexedSlices`` gradients for embeddings: the step is the tf_keras front's (``tf_step``: the
fused op or TensorFlow ops, the batch's rows only, every check before any write). On JAX every
gradient is dense and the step runs inside ``jit``: each variable of rank >= 1 is updated row by
row through the same rule, a row counting as present when its gradient row is non-zero and rows
absent left as they were; a step with a non-finite gradient is skipped (nothing can raise inside
``jit``), whatever ``non_finite`` says. The counters need ``jax_enable_x64`` there.

``iterations`` counts every call of ``apply``, skipped steps included (as Keras 3's own
``LossScaleOptimizer`` does); ``applied_steps``, the frequency estimates' ``t``, only the applied.
"""

import keras
import numpy as np
import tensorflow as tf

from tf_freqsgd import _compat, _tf_internals, arguments
from tf_freqsgd.optimizers import dense_pairing, frequency_rule, settings, step_checks, tf_step
from tf_freqsgd.optimizers.array_ops import TENSORFLOW, jax_ops

ON_TENSORFLOW = keras.backend.backend() == "tensorflow"


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _path(variable):
    return str(getattr(variable, "path", variable.name)).replace("/", "_").replace(":", "_")


def _constant_initializer(value):
    if np.ndim(value) == 0:
        return keras.initializers.Constant(value)
    values = np.asarray(value)
    return lambda shape, dtype=None: keras.ops.convert_to_tensor(values, dtype=dtype)


# Set on the frequency-aware optimizer instead (dense_pairing.refuse_outer_settings).
_OUTER_ONLY = ("clipnorm", "clipvalue", "global_clipnorm", "use_ema", "weight_decay", "loss_scale_factor",
               "gradient_accumulation_steps")


def _dense_optimizer(identifier):
    """A Keras 3 optimizer for the variables that are not id tables (a name, a config or an
    instance); None stays None."""
    if identifier is None:
        return None
    optimizer = keras.optimizers.get(identifier)
    if isinstance(optimizer, FrequencyAwareOptimizer) or not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(f"`dense_optimizer` must be a Keras optimizer (Adam, SGD, ...), not "
                         f"{type(optimizer).__name__}.")
    dense_pairing.refuse_outer_settings(optimizer, _OUTER_ONLY)
    return optimizer


class FrequencyAwareOptimizer(keras.optimizers.Optimizer):
    """Base of the Keras 3 optimizers whose per-row rate follows a ``FrequencyRule``.

    Subclasses create their per-variable state in ``_create_slots`` and implement
    ``_observe(slots, ids, occurrences)`` (TensorFlow) and ``_observe_rows(slots, present)`` (JAX):
    each row's count and estimated frequency; and ``_update(variable)``, its ``updates.Update``.

    ``dense_optimizer`` (a Keras optimizer, its name or config): trains every variable that is not
    an id table (one whose path holds one of ``table_names``) with its own rule and state, in the
    same step; the tables keep the frequency-aware rule. Without it they get the dense update (SGD).
    """

    def __init__(self, learning_rate, rule, name, non_finite="raise", counter_spec=None, dense_optimizer=None,
                 table_names=dense_pairing.DEFAULT_TABLE_NAMES, **kwargs):
        learning_rate = frequency_rule.check_learning_rate(learning_rate)
        arguments.choice("non_finite", non_finite, step_checks.NON_FINITE_POLICIES)
        # Keras' own weight decay sweeps whole tables every step; this rule's decay is per row.
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.rule = rule
        self.counter_spec = counter_spec  # None: frequencies are given, not counted
        self.non_finite = non_finite
        self.dense_optimizer = _dense_optimizer(dense_optimizer)
        self.table_names = arguments.names("table_names", table_names)
        # The t of every frequency estimate: the steps applied.
        self._applied_steps = self.add_variable((), initializer="zeros", dtype="int64",
                                                aggregation="only_first_replica", name="applied_steps")
        if ON_TENSORFLOW:
            # Restored before any variable: a checkpoint of other settings fails before a write.
            self._state_settings = settings.StateSettings(self.state_settings)

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        # SavedModels hold no Python state: the settings would be reported missing at every load.
        return settings.without_settings(super()._trackable_children(save_type, **kwargs), save_type)

    def __repr__(self):
        return f"<tf_freqsgd Keras 3 {type(self).__name__} {self.name!r}: {_compat.other_keras_fix(_compat.KERAS3)}>"

    @property
    def xp(self):
        return TENSORFLOW if ON_TENSORFLOW else jax_ops()

    def build(self, variables):
        if self.built:
            return
        if not ON_TENSORFLOW:
            jax_ops()  # refuses 32-bit JAX before any state is made
        super().build(variables)
        self._slots = [{} if self._dense_optimizer_trains(variable) else self._create_slots(variable)
                       for variable in variables]
        if self.dense_optimizer is not None:
            self.dense_optimizer.build([v for v in variables if self._dense_optimizer_trains(v)])
            # Saved, restored and (JAX) passed through each step with this optimizer's own.
            self._variables.extend(self.dense_optimizer.variables)

    def _dense_optimizer_trains(self, variable):
        if self.dense_optimizer is None:
            return False
        return not dense_pairing.is_table(str(getattr(variable, "path", variable.name)), self.table_names)

    def _create_slots(self, variable):
        raise NotImplementedError

    def state_settings(self):
        """The settings that decide what this optimizer's saved state holds and means."""
        own = {"class": type(self).__name__, "state_format": settings.STATE_FORMAT}
        if self.dense_optimizer is not None:
            own["dense_optimizer"] = type(self.dense_optimizer).__name__
        return own

    def get_config(self):
        dense = None if self.dense_optimizer is None else keras.optimizers.serialize(self.dense_optimizer)
        return {**super().get_config(), **self.rule.config(), "non_finite": self.non_finite,
                "table_names": list(self.table_names), "dense_optimizer": dense}

    def save_own_variables(self, store):
        super().save_own_variables(store)
        settings.save_with_variables(self, store)

    def load_own_variables(self, store):
        settings.load_own_variables(self, store, built=self.built)

    def row_state(self, variable):
        """The per-row state this optimizer keeps for ``variable``, by name (``counter``,
        ``accumulator``, ``frequency``, ``momentum``): ``tf.Variable`` s on TensorFlow, Keras
        variables on JAX. The optimizer must be built."""
        if not self.built:
            raise ValueError(f"{self.name} is not built yet: call optimizer.build(model.trainable_variables) "
                             "or train a step first.")
        try:
            slots = self._slots[self._get_variable_index(variable)]
        except KeyError:
            raise ValueError(f"{self.name} does not train variable '{variable.name}'.") from None
        return {name: _tf_variable(state) for name, state in slots.items()} if ON_TENSORFLOW else dict(slots)

    def add_row_variable(self, model_variable, name, dtype="float32", initial_value=0, per_row=True):
        """One optimizer value per row of ``model_variable`` (a scalar if not ``per_row``), placed with it."""
        shape = (model_variable.shape[0],) if per_row else ()
        make = lambda: self.add_variable(shape, initializer=_constant_initializer(initial_value),  # noqa: E731
                                         dtype=tf.as_dtype(dtype).name, name=f"{_path(model_variable)}_{name}")
        if ON_TENSORFLOW:
            with tf.distribute.get_strategy().extended.colocate_vars_with(_tf_variable(model_variable)):
                return make()
        return make()

    def add_row_variables(self, model_variable, states):
        """``add_row_variable`` of each of ``states`` (``{name: (dtype, initial value)}``), by name."""
        return {name: self.add_row_variable(model_variable, name, dtype, initial_value)
                for name, (dtype, initial_value) in states.items()}

    @property
    def applied_steps(self):
        """Steps applied so far: ``iterations`` without the skipped ones."""
        return self._applied_steps

    @property
    def step(self):
        """The 1-based number of the step being applied: the ``t`` of the frequency estimates."""
        return self._applied_steps + 1

    def _decays(self, variable):
        return self.rule.weight_decay > 0 and self._use_weight_decay(variable)

    def _fused_apply(self, ops, variable, slots, gradient, lr):
        return False

    # TensorFlow: the tf_keras front's step, checked as a whole.

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not ON_TENSORFLOW:
            return self._jax_update_step(grads, trainable_variables, learning_rate)
        grads_and_vars = self._all_reduce_sum_gradients(
            list(zip(grads, [_tf_variable(v) for v in trainable_variables])))
        _tf_internals.maybe_merge_call(
            self._checked_update, tf.distribute.get_strategy(), grads_and_vars, learning_rate)

    def _checked_update(self, distribution, grads_and_vars, learning_rate):
        def apply():
            self._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)
            if self.dense_optimizer is not None:
                self.dense_optimizer.iterations.assign_add(1)
            return tf.identity(self._applied_steps.assign_add(1))

        return tf_step.checked_step(self, grads_and_vars, distribution.experimental_local_results, apply,
                                    lambda: tf.identity(self._applied_steps.value))

    def update_step(self, gradient, variable, learning_rate):
        if self._dense_optimizer_trains(variable):
            self.dense_optimizer.update_step(gradient, variable, self.dense_optimizer.learning_rate)
            return
        lr = tf.cast(learning_rate, tf.float32)
        tf_step.update_variable(self, variable, self.row_state(variable), gradient, lr)

    # JAX: dense gradients, row by row.

    def _jax_update_step(self, grads, trainable_variables, learning_rate):
        xp = jax_ops()
        finite = [xp.all(xp.isfinite(g)) for g in grads if g is not None]
        applies = xp.all(xp.stack(finite)) if finite else True
        lr = xp.cast(learning_rate, xp.float32)
        dense = [(gradient, variable) for gradient, variable in zip(grads, trainable_variables)
                 if gradient is not None and self._dense_optimizer_trains(variable)]
        for gradient, variable in zip(grads, trainable_variables):
            if gradient is not None and not self._dense_optimizer_trains(variable):
                self._jax_update_variable(xp, gradient, variable, lr, applies)
        if dense:
            self._jax_dense_optimizer_step(xp, dense, applies)
        self.assign_add(self._applied_steps, xp.cast(applies, xp.int64))

    def _jax_dense_optimizer_step(self, xp, grads_and_vars, applies):
        """The dense optimizer's step on its variables, kept only when the step applies (nothing
        branches inside ``jit``: every value it wrote is put back otherwise)."""
        touched = [variable for _, variable in grads_and_vars] + list(self.dense_optimizer.variables)
        before = [variable.value for variable in touched]
        lr = self.dense_optimizer.learning_rate
        for gradient, variable in grads_and_vars:
            self.dense_optimizer.update_step(xp.where(applies, gradient, xp.full_like(gradient, 0.0)), variable, lr)
        self.dense_optimizer.iterations.assign_add(1)
        for variable, old in zip(touched, before):
            variable.assign(xp.where(applies, variable.value, old))

    def _jax_update_variable(self, xp, gradient, variable, lr, applies):
        slots = self._slots[self._get_variable_index(variable)]
        g = xp.where(applies, gradient, xp.full_like(gradient, 0.0))  # no NaN into any sum
        if len(variable.shape) == 0:
            store = KerasRows(self, variable, slots, written=applies)
            self._update(variable).dense(xp, store, g, lr)
            return
        present = xp.logical_and(xp.any(xp.reshape(g != 0, (g.shape[0], -1)), axis=1), applies)
        counts, frequency = self._observe_rows(xp, slots, present)
        store = KerasRows(self, variable, slots, written=present)
        # A dense gradient tells nothing of occurrences: each row present occurred once (CowClip's o_k).
        occurrences = xp.cast(present, xp.float32)
        self._update(variable).sparse(xp, store, None, g, occurrences, counts, frequency, lr, self.step)


class KerasRows:
    """The ``RowStore`` of ``updates`` over Keras variables, whole arrays at a time (JAX): a write
    changes only the rows ``written`` selects (a per-row mask, or one flag)."""

    def __init__(self, optimizer, variable, slots, written):
        self.optimizer = optimizer
        self.states = {"weights": variable, **slots}
        self.written = written

    def read(self, name, ids=None):
        return self.states[name].value

    def write(self, name, values, ids=None):
        state = self.states[name]
        old = state.value
        mask = self.written
        if len(getattr(mask, "shape", ())) and len(old.shape) > 1:
            mask = mask.reshape((-1,) + (1,) * (len(old.shape) - 1))
        self.optimizer.assign(state, self.optimizer.xp.where(mask, values.astype(old.dtype), old))

    def subtract(self, name, values, ids=None):
        self.write(name, self.read(name) - values)
