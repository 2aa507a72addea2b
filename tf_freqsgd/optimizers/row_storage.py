"""Where TensorFlow fronts keep a variable's rows and its per-row optimizer state: ``tf.Variable`` s,
or, for a TFRA dynamic embedding, width-1 hash tables keyed by id. TFRA is imported lazily, here
only, when a model has a dynamic embedding.

``VariableRows`` is the ``RowStore`` of ``updates`` over either.

Per-row optimizer state of TFRA dynamic embeddings, kept in dim-1 hash tables keyed by id.

Under TFRA, ``update_step`` sees a ``ShadowVariable``: a local, dense copy of the batch's rows,
whose row ``i`` holds the embedding of id ``variable.ids[i]``. A counter (or last-seen step, or
Adagrad accumulator) cannot be a slot of that copy, since TFRA would make it a table of the
embedding's width; each is its own ``de.Variable`` of width 1, keyed by the same ids, with the
embedding's devices, partitioner and key-value backend. ``KeyedRows`` lets the update rules read
and write such a table by local row, as they do a ``tf.Variable`` by row index.
"""

import sys

import tensorflow as tf

from tf_freqsgd import _tf_internals


def is_table(state):
    """True for a TFRA ``de.Variable`` (a hash table keyed by id)."""
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


def row_table(owner, variable, name, dtype, initial_value):
    """A width-1 table for one value per id of ``variable``'s dynamic embedding, tracked by ``owner``
    (the optimizer) so checkpoints and SavedModels carry it."""
    de = dynamic_embedding()
    params = variable.params
    table = de.Variable(
        key_dtype=params.key_dtype,
        value_dtype=dtype,
        dim=1,
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


def gather_rows(state, rows):
    """``tf.gather(state, rows)`` for a ``tf.Variable``, a partitioned one (``ShardedVariable``), a
    ``KeyedRows`` table, or a width-1 TFRA table read by key."""
    if isinstance(state, KeyedRows):
        return state.gather(rows)
    if is_table(state):
        return tf.reshape(state.lookup(rows), [-1])
    if isinstance(state, _tf_internals.ShardedVariable):
        # Its partitioners give shards contiguous rows, the first ones one more: "div".
        return tf.nn.embedding_lookup(state, rows)
    return tf.gather(state, rows)


def keys_of(state, rows):
    """The ids of ``rows``: the keys of a ``KeyedRows`` table's local rows, else the rows themselves."""
    return tf.gather(state.keys, rows) if isinstance(state, KeyedRows) else rows


def with_row_shape(gradient, variable):
    """The gradient as ``IndexedSlices`` over the batch's local rows, with its static width: TFRA's
    shadow copies have an unknown shape, and outside Keras layers their gradient is dense, one
    row per entry of ``variable.ids``."""
    width = variable.params.dim
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(tf.reshape(gradient.values, [-1, width]), gradient.indices, gradient.dense_shape)
    rows = tf.reshape(gradient, [-1, width])
    return tf.IndexedSlices(rows, tf.range(tf.shape(rows, out_type=tf.int64)[0]), tf.shape(rows, out_type=tf.int64))


def own_tables(slots):
    """The width-1 tables among a variable's slots (TFRA's own slots, momentum, are not)."""
    de = dynamic_embedding()
    return [state for state in slots.values() if isinstance(state, de.Variable)]


def bind_to_batch(slots, variable):
    """The slots of ``variable`` for this step: its width-1 tables bound to the batch's ids."""
    tables = own_tables(slots)
    return {name: KeyedRows(state, variable.ids) if any(state is t for t in tables) else state
            for name, state in slots.items()}


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
