"""Where TensorFlow fronts keep a variable's rows and its per-row optimizer state: ``tf.Variable`` s,
or, for a TFRA dynamic embedding, a hash table keyed by id. TFRA is imported lazily, here only, when
a model has a dynamic embedding.

``VariableRows`` is the ``RowStore`` of ``updates`` over either.

Under TFRA, ``update_step`` sees a ``ShadowVariable``: a local, dense copy of the batch's rows,
whose row ``i`` holds the embedding of id ``variable.ids[i]``. A counter (or Adagrad accumulator)
cannot be a slot of that copy, since TFRA would make it a table of the embedding's width. All of a
row's per-row state lives in one ``de.Variable`` keyed by the same ids, with the embedding's
devices, partitioner and key-value backend: a step looks the batch's ids up in it once and
upserts them once, however many states a row keeps (a probe of a width-1 table costs over half of
one of width 32: the probe, not the bytes, is the cost). One state keeps its own dtype in a width-1
table (``<table>-counter``); several share a float64 table, one column each
(``<table>-counter-accumulator``), which holds int32 count codes, float32 accumulators and float64
log-counts exactly. ``StateColumn`` reads one state of such a table, ``KeyedRows`` and
``BatchColumn`` read and write a table by the batch's local rows, as the update rules do a
``tf.Variable`` by row index.
"""

import sys

import numpy as np
import tensorflow as tf

from tf_freqsgd import _tf_internals


def is_table(state):
    """True for a TFRA ``de.Variable`` (a hash table keyed by id) or a ``StateColumn`` of one."""
    if isinstance(state, StateColumn):
        return True
    return type(state).__module__.startswith("tensorflow_recommenders_addons") and hasattr(state, "upsert")


def is_dynamic(variable):
    """True for a TFRA trainable (``TrainableWrapper`` / ``ShadowVariable``) of a dynamic table.

    Decided by module name, so TFRA is imported only by models that use it.
    """
    return type(variable).__module__.startswith("tensorflow_recommenders_addons") and hasattr(variable, "params")


def layer_table_exists(layer_name):
    """True when this process already holds the table of a TFRA ``Embedding`` layer named
    ``layer_name``: a new layer of that name would share it, or fail to make its own."""
    table = f"{layer_name}-parameter" if layer_name else "EmbeddingParameter"
    return table in _tf_internals.variable_store_names()  # where TFRA's de.get_variable keeps tables


def dynamic_embedding():
    from tensorflow_recommenders_addons import dynamic_embedding as de

    return de


def dynamic_embedding_layer():
    """TFRA's ``de.keras.layers.Embedding``, or None where no model could hold one: TFRA not
    imported yet (importing it patches TensorFlow, which breaks Keras 3)."""
    module = sys.modules.get("tensorflow_recommenders_addons.dynamic_embedding")
    return None if module is None else module.keras.layers.Embedding


def _state_table(owner, variable, name, dtype, width, initial_value):
    """A TFRA table keyed by the ids of ``variable``'s dynamic embedding, tracked by ``owner`` (the
    optimizer) so checkpoints and SavedModels carry it."""
    de = dynamic_embedding()
    params = variable.params
    table = de.Variable(
        key_dtype=params.key_dtype,
        value_dtype=dtype,
        dim=width,
        devices=params.devices,
        partitioner=params.partition_fn,
        name=f"{params.name}-{name}",
        initializer=tf.cast(initial_value, dtype),
        trainable=False,
        init_size=params.init_size,
        kv_creator=params.kv_creator,
    )
    _tf_internals.track_dependency(owner, table, f"{params.name}-{name}")
    return table


def row_table(owner, variable, name, dtype, initial_value):
    """A width-1 table for one value per id of ``variable``'s dynamic embedding (see ``_state_table``)."""
    return _state_table(owner, variable, name, dtype, 1, initial_value)


def state_tables(owner, variable, states):
    """The per-row optimizer ``states`` (``{name: (dtype, initial value)}``) of ``variable``'s dynamic
    embedding, all in one table: ``{name: table}`` for one state, else ``{name: StateColumn}`` of a
    float64 table of one column a state. Before this layout each state had its own width-1
    table; a checkpoint of that layout fails to restore with ``LegacyStateLayoutError``."""
    if len(states) == 1:
        (name, (dtype, initial_value)), = states.items()
        return {name: row_table(owner, variable, name, dtype, initial_value)}
    names = list(states)
    initial_values = [float(np.asarray(initial_value, np.float64)) for _, initial_value in states.values()]
    table = _state_table(owner, variable, "-".join(names), tf.float64, len(names), initial_values)
    for name in names:
        # Where a state's width-1 table of the former layout was: restoring one raises, before any
        # optimizer state is written (at the build, when the restore came first).
        legacy_name = f"{variable.params.name}-{name}"
        _tf_internals.track_dependency(owner, _tf_internals.RestoreRefusal(LegacyStateLayoutError(
            f"This checkpoint keeps the optimizer state '{legacy_name}' in a table of its own: it was written by "
            f"tf_freqsgd 0.2 or earlier, before a row's states shared one table ('{table.name}'). No optimizer "
            "state was restored. Restore it with the tf_freqsgd that wrote it and save the model and optimizer "
            "again from this version, or train from the embeddings alone (restore the model without the "
            "optimizer).")),
            legacy_name)
    return {name: StateColumn(table, index, tf.as_dtype(dtype)) for index, (name, (dtype, _)) in
            enumerate(states.items())}


class LegacyStateLayoutError(ValueError):
    """A checkpoint keeps a row's optimizer states in one width-1 table each; they now share one."""


class StateColumn:
    """One state of a multi-state table (``state_tables``), read like a width-1 table: ``lookup``,
    ``export``, ``size``, ``remove`` (which removes the ids' whole row of state)."""

    def __init__(self, table, index, dtype):
        self.table = table
        self.index = index
        self.value_dtype = dtype
        self.dim = 1

    @property
    def name(self):
        return f"{self.table.name}[{self.index}]"

    def _column(self, rows):
        return tf.cast(rows[:, self.index:self.index + 1], self.value_dtype)

    def lookup(self, keys):
        return self._column(tf.reshape(self.table.lookup(keys), [-1, self.table.dim]))

    def export(self):
        keys, values = self.table.export()
        return keys, self._column(values)

    def size(self):
        return self.table.size()

    def remove(self, keys):
        return self.table.remove(keys)


class KeyedRows:
    """A width-1 table read and written by the batch's local rows: local row ``i`` is key ``keys[i]``."""

    def __init__(self, table, keys):
        self.table = table
        self.keys = keys

    @property
    def dtype(self):
        return self.table.value_dtype

    def gather(self, rows):
        return tf.reshape(self.table.lookup(tf.gather(self.keys, rows)), [-1])

    def scatter_update(self, sparse):
        keys = tf.gather(self.keys, sparse.indices)
        return self.table.upsert(keys, tf.reshape(tf.cast(sparse.values, self.dtype), [-1, 1]))


class BatchRows:
    """The rows of a multi-state table for the batch's ids ``keys``: looked up once, at the first
    read of any of its states, and upserted once by ``write_back``. A step writes its states at the
    same local rows; each written column is kept as written and the rows are assembled once."""

    def __init__(self, table, keys):
        self.table = table
        self.keys = keys
        self._values = None  # the batch's rows of state as looked up, float64 [len(keys), width]
        self._written = {}  # column index: (local rows, values)

    def values(self):
        if self._values is None:
            self._values = tf.reshape(self.table.lookup(self.keys), [-1, self.table.dim])
        return self._values

    def read(self, index, rows):
        if index not in self._written:
            return tf.gather(self.values()[:, index], rows)
        written_rows, written = self._written[index]  # read after a write: the column as written
        column = tf.tensor_scatter_nd_update(self.values()[:, index], written_rows[:, None], written)
        return tf.gather(column, rows)

    def write(self, index, rows, values):
        if self._written and not any(rows is written_rows for written_rows, _ in self._written.values()):
            raise ValueError("A step writes every state of a row at the same local rows.")
        self._written[index] = (rows, tf.cast(values, tf.float64))

    def write_back(self):
        """The one upsert of the step's written rows (None when nothing was written)."""
        if not self._written:
            return None
        rows = next(iter(self._written.values()))[0]
        old = None if len(self._written) == self.table.dim else tf.gather(self.values(), rows)
        columns = [self._written[index][1] if index in self._written else old[:, index]
                   for index in range(self.table.dim)]
        return self.table.upsert(tf.gather(self.keys, rows), tf.stack(columns, axis=1))


class BatchColumn:
    """One state of a ``BatchRows``, read and written by the batch's local rows as ``KeyedRows``."""

    def __init__(self, rows, column):
        self.rows = rows
        self.column = column
        self.keys = rows.keys

    @property
    def dtype(self):
        return self.column.value_dtype

    def gather(self, rows):
        return tf.cast(self.rows.read(self.column.index, rows), self.dtype)

    def scatter_update(self, sparse):
        self.rows.write(self.column.index, sparse.indices, sparse.values)


class BatchStateVariables:
    """Local variables holding the batch's rows of a TFRA table's optimizer state, one a state, as
    TFRA's shadow variable holds the batch's embedding rows: ``load`` looks the batch's ids up once
    a table, the fused op updates the rows in place by local row, as it does a fixed table's, and
    ``write_back`` upserts them once a table. Made when the optimizer is built, outside any
    distribution strategy; not checkpointed (they hold one step's rows)."""

    def __init__(self, slots):
        self.states = {name: state for name, state in slots.items() if is_table(state)}
        with tf.init_scope():
            self.variables = {name: tf.Variable(tf.zeros([0], state.value_dtype), shape=tf.TensorShape([None]),
                                                trainable=False, name=f"batch_{name}")
                              for name, state in self.states.items()}

    def _by_table(self):
        """``[(table, [(state name, column)])]``: each table once, with the states it holds."""
        tables = []
        for name, state in self.states.items():
            table, column = (state.table, state.index) if isinstance(state, StateColumn) else (state, 0)
            for held, columns in tables:
                if held is table:
                    columns.append((name, column))
                    break
            else:
                tables.append((table, [(name, column)]))
        return tables

    def load(self, keys):
        """Assigns the state rows of ``keys`` (the batch's distinct ids); returns the variables by name."""
        for table, columns in self._by_table():
            rows = tf.reshape(table.lookup(keys), [-1, table.dim])
            for name, column in columns:
                self.variables[name].assign(tf.cast(rows[:, column], self.variables[name].dtype))
        return self.variables

    def write_back(self, keys):
        """One upsert a table of the rows as the step left them."""
        return tf.group([
            table.upsert(keys, tf.stack([tf.cast(self.variables[name].read_value(), table.value_dtype)
                                         for name, _ in sorted(columns, key=lambda c: c[1])], axis=1))
            for table, columns in self._by_table()])


def gather_rows(state, rows):
    """``tf.gather(state, rows)`` for a ``tf.Variable``, a partitioned one (``ShardedVariable``), a
    ``KeyedRows`` table or ``BatchColumn``, or a width-1 TFRA table or ``StateColumn`` read by key."""
    if isinstance(state, (KeyedRows, BatchColumn)):
        return state.gather(rows)
    if is_table(state):
        return tf.reshape(state.lookup(rows), [-1])
    if isinstance(state, _tf_internals.ShardedVariable):
        # Its partitioners give shards contiguous rows, the first ones one more: "div".
        return tf.nn.embedding_lookup(state, rows)
    return tf.gather(state, rows)


def with_row_shape(gradient, variable):
    """The gradient as ``IndexedSlices`` over the batch's local rows, with its static width: TFRA's
    shadow copies have an unknown shape, and outside Keras layers their gradient is dense, one
    row per entry of ``variable.ids``."""
    width = variable.params.dim
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(tf.reshape(gradient.values, [-1, width]), gradient.indices, gradient.dense_shape)
    rows = tf.reshape(gradient, [-1, width])
    return tf.IndexedSlices(rows, tf.range(tf.shape(rows, out_type=tf.int64)[0]), tf.shape(rows, out_type=tf.int64))


def summed_by_local_row(gradient, variable):
    """``(gradient, occurrences)``: the rows of ``gradient`` (``with_row_shape``'s) summed by local row,
    and how often each occurred. TFRA's shadow rows are the batch's distinct ids already, so a
    segment sum over them replaces de-duplicating the rows (``tf.unique``, a hash of every entry)."""
    local_rows = tf.shape(variable.ids, out_type=gradient.indices.dtype)[0]
    occurrences = tf.math.unsorted_segment_sum(tf.ones_like(gradient.indices, tf.float32), gradient.indices,
                                               local_rows)
    present = tf.where(occurrences > 0)[:, 0]  # every row, unless the gradient skips some
    summed = tf.math.unsorted_segment_sum(gradient.values, gradient.indices, local_rows)
    return (tf.IndexedSlices(tf.gather(summed, present), present, gradient.dense_shape),
            tf.gather(occurrences, present))


def own_tables(slots):
    """The optimizer's own state tables among a variable's slots, each once (TFRA's own slots,
    momentum, are not)."""
    de = dynamic_embedding()
    tables = []
    for state in slots.values():
        table = state.table if isinstance(state, StateColumn) else state
        if isinstance(table, de.Variable) and not any(table is t for t in tables):
            tables.append(table)
    return tables


def bind_to_batch(slots, variable):
    """``(slots, batch_rows)``: the slots of ``variable`` for this step, its state tables bound to the
    batch's ids, and the ``BatchRows`` of its multi-state table (or None), whose ``write_back``
    ends the step."""
    bound, batch_rows = {}, None
    for name, state in slots.items():
        if isinstance(state, StateColumn):
            batch_rows = batch_rows or BatchRows(state.table, variable.ids)
            bound[name] = BatchColumn(batch_rows, state)
        elif is_table(state):
            bound[name] = KeyedRows(state, variable.ids)
        else:
            bound[name] = state
    return bound, batch_rows


def remove_rows(variable, keys):
    """Removes ``keys`` from the embedding table of the TFRA trainable ``variable`` and from the
    slot tables TFRA made for it (momentum, say); the frequency optimizer's own width-1 tables
    keep them."""
    from tf_freqsgd import _tfra_internals

    slots = _tfra_internals.slot_tables(variable)
    return tf.group([variable.params.remove(keys)] + [slot.remove(keys) for slot in slots])


class VariableRows:
    """``weights`` (the variable) and the variable's optimizer state (``slots``), read and written
    by row: a sparse step touches the batch's rows only."""

    def __init__(self, variable, slots):
        self.states = {"weights": variable, **slots}

    def read(self, name, ids=None):
        state = self.states[name]
        return tf.convert_to_tensor(state) if ids is None else gather_rows(state, ids)

    def write(self, name, values, ids=None):
        state = self.states[name]
        if ids is None:
            state.assign(tf.cast(values, state.dtype))
        else:
            state.scatter_update(tf.IndexedSlices(tf.cast(values, state.dtype), ids))

    def subtract(self, name, values, ids):
        # One scatter, no gather: the rows are not read first.
        state = self.states[name]
        state.scatter_sub(tf.IndexedSlices(tf.cast(values, state.dtype), ids))
