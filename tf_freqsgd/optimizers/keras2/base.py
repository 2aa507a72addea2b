"""Keras plumbing shared by the frequency-aware optimizers.

A tf_keras optimizer normally de-duplicates ``IndexedSlices`` before ``update_step``, which loses
how often each id occurred in the batch. These optimizers keep the raw gradient instead and
de-duplicate inside ``update_step`` with ``sparse_rows.deduplicate``, which returns the
occurrence counts in the same pass. Every sparse update touches the rows of the batch only.

A step is all-or-nothing: ``step_checks`` checks every gradient of the step before any variable,
counter or step count is written (see that module, and the README's "Guarantees").
"""

import tensorflow as tf
import tf_keras

from tf_freqsgd import _compat, _tf_internals, arguments
from tf_freqsgd.optimizers import row_storage as dynamic
from tf_freqsgd.optimizers import dense_pairing, frequency_rule, settings, sparse_rows, step_checks, tf_step


# Set on the frequency-aware optimizer instead (dense_pairing.refuse_outer_settings).
_OUTER_ONLY = ("clipnorm", "clipvalue", "global_clipnorm", "use_ema", "weight_decay")


def _dense_optimizer(identifier):
    """A tf_keras optimizer for the variables that are not id tables, from a name, a config or an
    instance; None stays None."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        # tf_keras reads a config without "is_legacy_optimizer" as a legacy optimizer's (and
        # changes the dict it is given).
        config = {**identifier, "config": {"is_legacy_optimizer": False, **identifier.get("config", {})}}
        optimizer = tf_keras.optimizers.deserialize(config)
    else:
        optimizer = tf_keras.optimizers.get(identifier)
    if not isinstance(optimizer, tf_keras.optimizers.Optimizer) or isinstance(optimizer, FrequencyAwareOptimizer):
        raise ValueError(f"`dense_optimizer` must be a tf_keras optimizer of the current API (Adam, SGD, ...), "
                         f"not {type(optimizer).__name__}.")
    dense_pairing.refuse_outer_settings(optimizer, _OUTER_ONLY)
    return optimizer


class FrequencyAwareOptimizer(tf_keras.optimizers.Optimizer):
    """Base of the optimizers whose per-row rate follows a ``FrequencyRule``.

    Subclasses create their per-variable state in ``_create_slots`` and implement
    ``_observe(slots, ids, occurrences)``, which returns each row's count and estimated frequency,
    and ``_update(variable)``, the ``updates.Update`` of a variable.

    ``dense_optimizer`` (a tf_keras optimizer, its name or config): trains every variable that is
    not an id table (a TFRA table, or a variable whose name holds one of ``table_names``) with its
    own rule and state, in the same step; the tables keep the frequency-aware rule and its few
    bytes a row. Without it those variables get this optimizer's dense update (SGD).
    """

    def __init__(self, learning_rate, rule, name, non_finite="raise", counter_spec=None, jit_compile=False,
                 dense_optimizer=None, table_names=dense_pairing.DEFAULT_TABLE_NAMES, **kwargs):
        super().__init__(name=name, weight_decay=None, jit_compile=jit_compile, **kwargs)
        # Not a dependency of this optimizer: its variables join this one's (`_variables`), so a
        # checkpoint or a .keras file holds them once, with this optimizer's.
        self.dense_optimizer = self._no_dependency(_dense_optimizer(dense_optimizer))
        self.table_names = arguments.names("table_names", table_names)
        learning_rate = frequency_rule.check_learning_rate(learning_rate)
        arguments.choice("non_finite", non_finite, step_checks.NON_FINITE_POLICIES)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.rule = rule
        self.counter_spec = counter_spec  # None: frequencies are given, not counted
        self.non_finite = non_finite
        # Keras' own weight decay sweeps whole tables every step; this rule's decay is applied per
        # row in update_step. Kept on `weight_decay` so get_config and Keras tooling see it.
        self.weight_decay = rule.weight_decay
        # The t of every frequency estimate. Not `iterations`: a LossScaleOptimizer advances that
        # on the steps it skips.
        with tf.init_scope():
            self._applied_steps = tf.Variable(0, name="applied_steps", dtype=tf.int64, trainable=False)
        self._variables.append(self._applied_steps)
        # Restored before any variable: a checkpoint of other settings fails before a write.
        self._state_settings = settings.StateSettings(self.state_settings)

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        # SavedModels hold no Python state: the settings would be reported missing at every load.
        return settings.without_settings(super()._trackable_children(save_type, **kwargs), save_type)

    def __repr__(self):
        return f"<tf_freqsgd tf_keras {type(self).__name__} {self.name!r}: {_compat.other_keras_fix(_compat.TF_KERAS)}>"

    def build(self, var_list):
        if any(dynamic.is_dynamic(variable) for variable in var_list) and not hasattr(self, "_bp_v2"):
            # TFRA's wrapper (it sets _bp_v2) reads the batch's rows from the hash tables before
            # update_step and writes them back after; passing the optimizer unwrapped is the same.
            dynamic.dynamic_embedding().DynamicEmbeddingOptimizer(self)
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        # Each shard of a partitioned table gets its own row state; checkpoints see them joined
        # (`_variables`), so a checkpoint restores into another number of shards.
        self._row_shards = self._no_dependency({})
        # Each partitioned table's row state joined, by the table's id: what row_state returns for it.
        self._sharded_row_state = self._no_dependency({})
        # A step's occurrences of the ids its gradients were summed over on a worker (see
        # _summed_on_worker), by variable key.
        self._worker_occurrences = self._no_dependency({})
        self._slots = self._no_dependency([
            {} if self._dense_optimizer_trains(variable) else self._create_slots(variable) for variable in var_list])
        if self.dense_optimizer is not None:
            self.dense_optimizer.build([variable for variable in var_list if self._dense_optimizer_trains(variable)])
            self._variables.extend(self.dense_optimizer.variables)
        # Each dynamic embedding's TFRA trainable and this optimizer's state for it (its table), by
        # table name: what eviction and the size reports work on.
        # (NoDependency: the tables are tracked once, where they are made.)
        self.dynamic_tables = self._no_dependency({
            variable.params.name: (variable, slots)
            for variable, slots in zip(var_list, self._slots) if dynamic.is_dynamic(variable)
        })
        # The fused op's local copies of each table's batch of state rows, where the op may run: not
        # with admission, which needs the batch's counts the op keeps to itself, nor under a
        # distribution strategy, which places and mirrors variables of its own.
        self._batch_states = self._no_dependency({
            name: dynamic.BatchStateVariables(slots) for name, (_, slots) in self.dynamic_tables.items()
            if self.fused_op_applies(slots) and not getattr(self.counter_spec, "admission_count", None)
            and not tf.distribute.has_strategy()})
        self._built = True

    def _create_slots(self, variable):
        raise NotImplementedError

    def _dense_optimizer_trains(self, variable):
        if self.dense_optimizer is None or dynamic.is_dynamic(variable):
            return False
        return not dense_pairing.is_table(variable.name, self.table_names)

    def state_settings(self):
        """The settings that decide what this optimizer's saved state holds and means."""
        own = {"class": type(self).__name__, "state_format": settings.STATE_FORMAT}
        if self.dense_optimizer is not None:
            own["dense_optimizer"] = type(self.dense_optimizer).__name__
        return own

    def save_own_variables(self, store):
        super().save_own_variables(store)
        settings.save_with_variables(self, store)

    def load_own_variables(self, store):
        settings.load_own_variables(self, store, built=getattr(self, "_built", False))

    def row_state(self, variable):
        """The per-row state this optimizer keeps for ``variable`` (a model variable, or a TFRA
        ``de.Variable`` / its trainable), by name: ``counter``, ``accumulator``, ``frequency``,
        ``momentum``. ``tf.Variable`` rows for a fixed table, TFRA tables (or ``StateColumn`` s of one)
        keyed by id for a dynamic one. The optimizer must be built."""
        if not getattr(self, "_built", False):
            raise ValueError(f"{self.name} is not built yet: call optimizer.build(model.trainable_variables) "
                             "or train a step first.")
        table = getattr(variable, "params", variable)
        if getattr(table, "name", None) in self.dynamic_tables and dynamic.is_table(table):
            return self.dynamic_tables[table.name][1]
        if isinstance(variable, _tf_internals.ShardedVariable) and id(variable) in self._sharded_row_state:
            return self._sharded_row_state[id(variable)]
        key = self._var_key(variable)
        if key not in self._index_dict:
            raise ValueError(f"{self.name} does not train variable '{variable.name}'.")
        return self._slots[self._index_dict[key]]

    def add_row_variable(self, model_variable, name, dtype=tf.float32, initial_value=0, per_row=True):
        """One optimizer value per row of ``model_variable`` (a scalar if not ``per_row``), placed with it:
        for a dynamic embedding, a width-1 TFRA table keyed by its ids (``add_row_variables``: several
        states in one table)."""
        if per_row and dynamic.is_dynamic(model_variable):
            return dynamic.row_table(self, model_variable, name, dtype, initial_value)
        shape = [model_variable.shape[0]] if per_row else []
        strategy = tf.distribute.get_strategy()
        with strategy.extended.colocate_vars_with(model_variable):
            variable = tf.Variable(
                tf.broadcast_to(tf.cast(initial_value, dtype), shape),
                name=f"{name}/{_tf_internals.shared_name(model_variable)}",
                trainable=False,
            )
        table = _tf_internals.sharded_container(model_variable) if per_row else None
        if table is None:
            self._variables.append(variable)
            return variable
        # A shard of a partitioned table: the row state is checkpointed as one ShardedVariable of
        # the same partitioning, made once every shard's part exists (as tf_keras does for slots).
        shards = self._row_shards.setdefault((id(table), name), [])
        shards.append(variable)
        if len(shards) == len(table.variables):
            joined = _tf_internals.ShardedVariable(shards)
            self._variables.append(joined)
            self._sharded_row_state.setdefault(id(table), {})[name] = joined
        return variable

    def add_row_variables(self, model_variable, states):
        """``add_row_variable`` of each of ``states`` (``{name: (dtype, initial value)}``), by name; for a
        dynamic embedding all of them in one TFRA table, so that a step reads and writes a row's
        state with one lookup and one upsert."""
        if dynamic.is_dynamic(model_variable):
            return dynamic.state_tables(self, model_variable, states)
        return {name: self.add_row_variable(model_variable, name, dtype, initial_value)
                for name, (dtype, initial_value) in states.items()}

    def _internal_apply_gradients(self, grads_and_vars):
        # Here rather than in apply_gradients, which TFRA's wrapper replaces. The checks and the
        # skip decision run where the updates do: in the cross-replica context under a strategy
        # that merges (a cond around a merge_call is not allowed), else in the replica's.
        grads_and_vars = list(grads_and_vars)
        self._worker_occurrences = self._no_dependency({})
        if isinstance(self._distribution_strategy, tf.distribute.experimental.ParameterServerStrategy):
            grads_and_vars = [(self._summed_on_worker(gradient, variable), variable)
                              for gradient, variable in grads_and_vars]
        return _tf_internals.maybe_merge_call(self._checked_apply, self._distribution_strategy, grads_and_vars)

    def _summed_on_worker(self, gradient, variable):
        """Under ParameterServerStrategy the update runs on the variable's server: a sparse
        gradient's repeated ids are summed here, on the worker, so that each touched row crosses
        the network once (as tf_keras' own de-duplication does), its occurrences beside it."""
        if not isinstance(gradient, tf.IndexedSlices) or dynamic.is_dynamic(variable):
            return gradient
        ids, rows, occurrences = sparse_rows.deduplicate(gradient)
        self._worker_occurrences[self._var_key(variable)] = occurrences
        return tf.IndexedSlices(rows, ids, gradient.dense_shape)

    def _checked_apply(self, distribution, grads_and_vars):
        """Applies the step when every check passes: all of it, or nothing."""

        def apply():
            self._unadmitted = self._no_dependency([])
            applied = self._distributed_apply_gradients_fn(distribution, grads_and_vars)
            # After TFRA has written the batch's rows back: drop those of ids not yet admitted.
            removals = [dynamic.remove_rows(variable, keys) for variable, keys in self._unadmitted]
            counted = [self._applied_steps.assign_add(1)]
            if self.dense_optimizer is not None:
                counted.append(self.dense_optimizer.iterations.assign_add(1))
            with tf.control_dependencies([applied] + removals):
                with tf.control_dependencies(counted):
                    return tf.identity(self.iterations)

        return tf_step.checked_step(self, grads_and_vars, distribution.experimental_local_results, apply,
                                    lambda: tf.identity(self.iterations))

    def _deduplicate_sparse_grad(self, grads):
        # update_step de-duplicates itself: it needs the occurrence counts.
        return grads

    def _apply_weight_decay(self, variables):
        # Applied per row inside update_step; Keras' version would sweep whole tables.
        pass

    def _decays(self, variable):
        return self.rule.weight_decay > 0 and self._use_weight_decay(variable)

    @property
    def applied_steps(self):
        """Steps applied so far: ``iterations`` without the steps a ``LossScaleOptimizer`` skipped."""
        return self._applied_steps

    @property
    def step(self):
        """The 1-based number of the step being applied: the ``t`` of the frequency estimates."""
        return self._applied_steps + 1

    def update_step(self, gradient, variable):
        if self._dense_optimizer_trains(variable):
            self.dense_optimizer.update_step(gradient, variable)
            return
        slots = self._slots[self._index_dict[self._var_key(variable)]]
        if dynamic.is_dynamic(variable):
            self._update_table(variable, slots, dynamic.with_row_shape(gradient, variable))
            return
        tf_step.update_variable(self, variable, slots, gradient, self.base_rate(),
                                self._worker_occurrences.get(self._var_key(variable)))

    def _update_table(self, variable, slots, gradient):
        """A TFRA table's step on its shadow rows (the batch's distinct ids, local row ``i`` the id
        ``variable.ids[i]``): with the fused op on the batch's state rows held in local variables
        (``BatchStateVariables``), else in TensorFlow ops on the state tables bound to the batch.
        Each state table is looked up once and upserted once either way."""
        batch_state = self._batch_states.get(variable.params.name)
        # A strategy entered after the build: its replicas cannot share the local copies.
        ops = tf_step.fused_ops_for(variable) if batch_state is not None and not tf.distribute.has_strategy() else None
        if ops is not None:
            local = batch_state.load(variable.ids)
            self._fused_apply(ops, variable, {**slots, **local}, gradient, self.base_rate())
            batch_state.write_back(variable.ids)
            return
        slots, batch_rows = dynamic.bind_to_batch(slots, variable)
        gradient, occurrences = dynamic.summed_by_local_row(gradient, variable)
        counted = tf_step.update_variable(self, variable, slots, gradient, self.base_rate(), occurrences)
        if batch_rows is not None:
            batch_rows.write_back()
        if counted is not None:
            self._hold_back_unadmitted(variable, *counted)

    def fused_op_applies(self, slots):
        """Whether the fused op can make a sparse step with ``slots``."""
        return False

    def _fused_apply(self, ops, variable, slots, gradient, lr):
        """Applies a sparse step with the fused op and returns True, or returns False."""
        return False

    def _hold_back_unadmitted(self, variable, ids, counts):
        """Dynamic tables: records the batch's ids that keep no row yet (see ``admission_count``)."""

    def base_rate(self):
        return tf.cast(self.learning_rate, tf.float32)

    def get_config(self):
        config = super().get_config()
        config.update(self.rule.config(), learning_rate=self._serialize_hyperparameter(self._learning_rate),
                      non_finite=self.non_finite, table_names=list(self.table_names),
                      dense_optimizer=None if self.dense_optimizer is None
                      else tf_keras.optimizers.serialize(self.dense_optimizer))
        return config
