"""The optimizers on TFRA dynamic embeddings: same training as on a fixed table, a row's optimizer
state in one hash table probed once a step, admission, eviction and table sizes."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from tf_freqsgd import dynamic

de = pytest.importorskip("tensorflow_recommenders_addons.dynamic_embedding")

# Hashed-looking 64-bit ids, negative ones included, each with its row in a fixed table.
IDS = np.array([5, 7, 2**40, -3, -(2**62), 2**62 + 11], np.int64)
BATCHES = [np.array([[5, 5, 7], [2**40, 5, -3]], np.int64), np.array([[-(2**62), 5, 2**62 + 11], [7, 7, 5]], np.int64)]
LABELS = np.array([[1.0], [0.0]], np.float32)
DIM = 4
_names = itertools.count()


def unique_name():
    # TFRA layers of one name share their table within a process.
    return f"table_{next(_names)}"


def build_model(dynamic_table):
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    if dynamic_table:
        embedding = de.keras.layers.Embedding(DIM, initializer=tf.keras.initializers.Constant(0.1), name=unique_name())
    else:
        embedding = tf.keras.layers.Embedding(len(IDS), DIM, embeddings_initializer=tf.keras.initializers.Constant(0.1))
    pooled = tf.keras.layers.GlobalAveragePooling1D()(embedding(ids))
    score = tf.keras.layers.Dense(1, kernel_initializer="ones")(pooled)
    return tf.keras.Model(ids, score), embedding


def row_positions(batch):
    return np.searchsorted(np.sort(IDS), batch)


def train(model, optimizer, fixed_table=False, epochs=3):
    model.compile(optimizer, "mse")
    for _ in range(epochs):
        for batch in BATCHES:
            model.train_on_batch(row_positions(batch) if fixed_table else batch, LABELS)


def exported(table):
    keys, values = table.export()
    order = np.argsort(keys.numpy())
    return keys.numpy()[order], values.numpy()[order]


OPTIMIZERS = {
    "CounterSGD": lambda: tf_freqsgd.CounterSGD(0.5, counter_halflife=3.0),
    "RowwiseAdagradCounter": lambda: tf_freqsgd.RowwiseAdagradCounter(0.5),
    "CounterSGD_momentum": lambda: tf_freqsgd.CounterSGD(0.5, momentum=0.9),
    "CounterSGD_cowclip": lambda: tf_freqsgd.CounterSGD(0.5, cowclip_ratio=0.3),
}


@pytest.mark.parametrize("wrapped", [False, True], ids=["compiled_directly", "wrapped_by_hand"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_dynamic_table_trains_as_the_fixed_table_does(name, wrapped, sparse_apply_path):
    fixed, fixed_embedding = build_model(dynamic_table=False)
    train(fixed, OPTIMIZERS[name](), fixed_table=True)
    model, embedding = build_model(dynamic_table=True)
    optimizer = OPTIMIZERS[name]()
    train(model, de.DynamicEmbeddingOptimizer(optimizer) if wrapped else optimizer)

    keys, rows = exported(embedding.params)
    np.testing.assert_array_equal(keys, np.sort(IDS))
    np.testing.assert_allclose(rows, fixed_embedding.embeddings.numpy(), rtol=1e-6, atol=1e-7)
    for batch in BATCHES:
        np.testing.assert_allclose(model(batch), fixed(row_positions(batch)), rtol=1e-6, atol=1e-7)


def test_counter_is_a_width_one_table_keyed_by_id_and_no_slot_is_spent():
    model, embedding = build_model(dynamic_table=True)
    optimizer = tf_freqsgd.CounterSGD(0.5)
    train(model, optimizer, epochs=2)
    counter = optimizer.dynamic_tables[embedding.params.name][1]["counter"]
    assert isinstance(counter, de.Variable) and counter.dim == 1 and counter.key_dtype == tf.int64
    assert counter.devices == embedding.params.devices
    keys, counts = exported(counter)
    occurrences = {k: 2 * sum(int((b == k).sum()) for b in BATCHES) for k in IDS}
    np.testing.assert_array_equal(keys, np.sort(IDS))
    np.testing.assert_array_equal(counts.ravel(), [occurrences[k] for k in keys])
    # TFRA makes no embedding-width slot table for a counter.
    assert not embedding.shadow._optimizer_vars.value


def table_probes(train_step, table, *args):
    """``{op type: count}`` of the hash-table finds and inserts on ``table`` in ``train_step``'s graph."""
    graph = train_step.get_concrete_function(*args).graph
    handles = {id(internal) for external, internal in graph.captures
               if any(external is shard.resource_handle for shard in table.tables)}
    probes = {"TFRA>CuckooHashTableFind": 0, "TFRA>CuckooHashTableInsert": 0}
    for op in graph.get_operations():
        if op.type in probes and op.inputs and id(op.inputs[0]) in handles:
            probes[op.type] += 1
    return probes


def test_a_rows_states_share_one_table_looked_up_once_and_upserted_once_a_step(sparse_apply_path):
    model, embedding = build_model(dynamic_table=True)
    optimizer = tf_freqsgd.RowwiseAdagradCounter(0.5, initial_accumulator_value=0.25)
    train(model, optimizer, epochs=2)
    state = optimizer.row_state(embedding.params)
    table = state["counter"].table
    assert table is state["accumulator"].table and table.dim == 2 and table.value_dtype == tf.float64
    assert table.devices == embedding.params.devices
    keys, counts = exported(state["counter"])
    occurrences = {k: 2 * sum(int((b == k).sum()) for b in BATCHES) for k in IDS}
    np.testing.assert_array_equal(keys, np.sort(IDS))
    assert counts.dtype == np.int32
    np.testing.assert_array_equal(counts.ravel(), [occurrences[k] for k in keys])
    _, accumulators = exported(state["accumulator"])
    assert accumulators.dtype == np.float32 and np.all(accumulators > 0.25)

    @tf.function
    def train_step(ids, labels):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(ids, training=True) - labels) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    probes = table_probes(train_step, table, tf.constant(BATCHES[0]), tf.constant(LABELS))
    assert probes == {"TFRA>CuckooHashTableFind": 1, "TFRA>CuckooHashTableInsert": 1}
    # The fused op updates the batch's rows of state in local variables, as it does a fixed table's.
    op_types = {op.type for op in train_step.get_concrete_function(tf.constant(BATCHES[0]),
                                                                   tf.constant(LABELS)).graph.get_operations()}
    assert ("ResourceSparseApplyRowwiseAdagradCounter" in op_types) == (sparse_apply_path == "custom")


def test_custom_loop_with_de_variable_and_embedding_lookup():
    table = de.Variable(key_dtype=tf.int64, value_dtype=tf.float32, dim=DIM, name=unique_name(),
                        initializer=tf.keras.initializers.Constant(0.1))
    optimizer = tf_freqsgd.CounterSGD(0.5)
    # Outside Keras layers TFRA keeps one shadow row per id given: look up distinct ids.
    ids = tf.unique(tf.constant(BATCHES[0].ravel()))[0]

    def step():  # eager: TFRA returns the trainable only outside tf.function
        with tf.GradientTape() as tape:
            rows, trainable = de.embedding_lookup(table, ids, return_trainable=True, name="lookup")
            loss = tf.reduce_sum(rows)
        optimizer.apply_gradients([(tape.gradient(loss, trainable), trainable)])

    for _ in range(2):
        step()
    keys, rows = exported(table)
    np.testing.assert_array_equal(keys, np.unique(BATCHES[0]))
    assert np.all(rows < 0.1)  # every row of the batch moved against a positive gradient
    _, counts = exported(optimizer.dynamic_tables[table.name][1]["counter"])
    np.testing.assert_array_equal(counts.ravel(), [2, 2, 2, 2])  # one a step for each distinct id


def test_admission_keeps_no_row_until_the_count_is_reached():
    model, embedding = build_model(dynamic_table=True)
    optimizer = tf_freqsgd.CounterSGD(0.5, admission_count=4, momentum=0.5)
    model.compile(optimizer, "mse")
    model.train_on_batch(BATCHES[0], LABELS)  # id 5 seen 3 times: below 4
    assert int(embedding.params.size()) == 0
    assert dynamic.table_sizes(optimizer)[embedding.params.name] == {"rows": 0, "counted": 4}
    # Unadmitted ids read the table's default.
    np.testing.assert_allclose(embedding(tf.constant([[5, 7, -3]], tf.int64)).numpy(), 0.1)
    model.train_on_batch(BATCHES[0], LABELS)  # 5 reaches 6; 7, 2**40 and -3 reach 2
    keys, rows = exported(embedding.params)
    np.testing.assert_array_equal(keys, [5])
    assert not np.allclose(rows, 0.1)
    slot_sizes = [int(slot.size()) for slot in embedding.shadow._optimizer_vars.value]
    assert slot_sizes == [1]  # the momentum slot holds the admitted id only


def trained_for_eviction(halflife=None):
    model, embedding = build_model(dynamic_table=True)
    optimizer = tf_freqsgd.CounterSGD(0.5, counter_halflife=halflife, momentum=0.5)
    train(model, optimizer, epochs=1)
    return model, embedding, optimizer


def test_evict_by_min_count_removes_rows_counters_and_slots():
    _, embedding, optimizer = trained_for_eviction()
    # Counts after one pass: 5 -> 4, 7 -> 3, the others 1.
    assert dynamic.evict(optimizer, min_count=2) == {embedding.params.name: 4}
    np.testing.assert_array_equal(exported(embedding.params)[0], [5, 7])
    table = optimizer.dynamic_tables[embedding.params.name][1]["counter"]
    np.testing.assert_array_equal(exported(table)[0], [5, 7])
    assert [int(slot.size()) for slot in embedding.shadow._optimizer_vars.value] == [2]


def test_evict_top_n_keeps_the_most_counted_and_decays_by_half_life():
    _, embedding, optimizer = trained_for_eviction(halflife=1.0)
    assert dynamic.evict(optimizer, top_n=1) == {embedding.params.name: 5}
    np.testing.assert_array_equal(exported(embedding.params)[0], [5])
    # Decayed to the current step: id 5's count (2.5 after two steps with h = 1) halves each step.
    optimizer.applied_steps.assign_add(2)
    assert dynamic.evict(optimizer, min_count=1.0) == {embedding.params.name: 1}


def test_eviction_and_size_callbacks_in_fit():
    model, embedding = build_model(dynamic_table=True)
    model.compile(tf_freqsgd.CounterSGD(0.5), "mse")
    sizes = dynamic.TableSizeLogger()
    history = model.fit(np.concatenate(BATCHES), np.concatenate([LABELS, LABELS]), batch_size=2, epochs=2,
                        verbose=0, shuffle=False, callbacks=[dynamic.FrequencyEviction(top_n=2), sizes])
    name = embedding.params.name
    # Evicted ids come back in the next epoch with fresh counts, and lose to 5 and 7 again.
    assert history.history[f"evicted/{name}"] == [4, 4]
    assert [epoch[name] for epoch in sizes.history] == [{"rows": 2, "counted": 2}] * 2
    assert history.history[f"rows/{name}"] == [2, 2]


@pytest.mark.parametrize("arguments, message", [
    ({}, "min_count, top_n or both"),
    ({"min_count": -1}, "`min_count` must be a finite number >= 0"),
    ({"min_count": float("nan")}, "`min_count` must be a finite number >= 0"),
    ({"top_n": 1.5}, "`top_n` must be an integer >= 0"),
    ({"top_n": True}, "`top_n` must be an integer >= 0; got True"),
])
def test_evict_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        dynamic.evict(tf_freqsgd.CounterSGD(), **arguments)


def test_admission_count_must_be_positive():
    with pytest.raises(ValueError, match="admission_count"):
        tf_freqsgd.CounterSGD(admission_count=0)


def test_frequency_sgd_on_a_dynamic_table_trains_as_on_the_fixed_one():
    frequencies = np.linspace(0.5, 3.0, len(IDS))  # per row of the sorted ids
    frequencies[-1] = 1.0  # what an id left out of the dynamic table's frequencies gets
    fixed, fixed_embedding = build_model(dynamic_table=False)
    train(fixed, tf_freqsgd.FrequencySGD({fixed_embedding.embeddings.name: frequencies}, 0.5), fixed_table=True)
    model, embedding = build_model(dynamic_table=True)
    given = {embedding.params.name: (np.sort(IDS)[:-1], frequencies[:-1])}
    train(model, tf_freqsgd.FrequencySGD(given, 0.5))
    _, rows = exported(embedding.params)
    np.testing.assert_allclose(rows, fixed_embedding.embeddings.numpy(), rtol=1e-6, atol=1e-7)


def test_frequency_sgd_dynamic_frequencies_must_be_ids_and_values():
    model, embedding = build_model(dynamic_table=True)
    model.compile(tf_freqsgd.FrequencySGD({embedding.params.name: np.ones(3)}), "mse")
    with pytest.raises(ValueError, match=r"pair \(ids, values\)"):
        model.train_on_batch(BATCHES[0], LABELS)
