"""Bad input to TFRA dynamic embeddings trained by tf_freqsgd's optimizers: ids of the wrong dtype,
string ids (and the hashing recipe), empty batches, non-finite losses, and a checkpoint restored
into a table of another width. Models run eagerly: tracing a TFRA train step takes tens of
seconds."""

import itertools
import re

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import variable_scope

import tf_freqsgd
from tf_freqsgd.dynamic import saving

de = pytest.importorskip("tensorflow_recommenders_addons.dynamic_embedding")
# Every case on the fused op and on the pure-TF path.
pytestmark = pytest.mark.usefixtures("sparse_apply_path")

BATCH = np.array([[5, 5, 2**62 + 11], [-(2**63), 7, -3]], np.int64)
LABELS = np.array([[1.0], [0.0]], np.float32)
DIM = 4
_names = itertools.count()


def unique_name():
    # TFRA layers of one name share their table within a process.
    return f"bad_input_{next(_names)}"


def build_model(name=None, key_dtype=tf.int64, input_dtype=None, dim=DIM, ids_per_row=3, pooling="mean"):
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(ids_per_row,), dtype=input_dtype or key_dtype)
    embedding = de.keras.layers.Embedding(dim, key_dtype=key_dtype, initializer=tf.keras.initializers.Constant(0.1),
                                          name=name or unique_name())
    rows = embedding(ids)
    pooled = tf.reduce_sum(rows, axis=1) if pooling == "sum" else tf.keras.layers.GlobalAveragePooling1D()(rows)
    return tf.keras.Model(ids, tf.keras.layers.Dense(1, kernel_initializer="ones")(pooled)), embedding


OPTIMIZERS = {
    "CounterSGD": lambda: tf_freqsgd.CounterSGD(0.5, counter_halflife=3.0, momentum=0.5),
    "RowwiseAdagradCounter": lambda: tf_freqsgd.RowwiseAdagradCounter(0.5, counter_halflife=3.0),
}


def compiled(model, optimizer=None):
    model.compile(optimizer or OPTIMIZERS["CounterSGD"](), "mse", run_eagerly=True)
    return model


def exported(table):
    keys, values = table.export()
    order = np.argsort(keys.numpy())
    return keys.numpy()[order], values.numpy()[order]


def tables(model, embedding):
    """The embedding table, every width-1 table of the optimizer and TFRA's slot tables."""
    found = {"embedding": embedding.params}
    for _, slots in model.optimizer.dynamic_tables.values():
        found.update({name: table for name, table in slots.items() if isinstance(table, de.Variable)})
    found.update({f"tfra/{slot.name}": slot for slot in embedding.shadow._optimizer_vars.value})
    return found


def snapshot(model, embedding):
    state = {name: exported(table) for name, table in tables(model, embedding).items()}
    state["dense"] = tuple(weight.numpy() for weight in model.layers[-1].weights)
    state["iterations"] = (int(model.optimizer.iterations),)
    return state


def assert_same_state(actual, expected, skip=()):
    assert actual.keys() == expected.keys()
    for key in expected.keys() - set(skip):
        for got, want in zip(actual[key], expected[key]):
            np.testing.assert_array_equal(got, want, err_msg=key)


# Ids of the wrong dtype.

def test_int32_ids_into_an_int64_keras_input_are_cast_and_train_as_int64_ids():
    trained = []
    for dtype in (np.int64, np.int32):
        model, embedding = build_model()
        compiled(model, tf_freqsgd.CounterSGD(0.5)).train_on_batch(np.array([[5, 5, 7], [-3, 7, 9]], dtype), LABELS)
        trained.append(snapshot(model, embedding))
    assert_same_state(trained[1], trained[0])
    np.testing.assert_array_equal(trained[0]["counter"][0], [-3, 5, 7, 9])


def test_an_int32_keyed_table_keeps_int32_keyed_counters():
    model, embedding = build_model(key_dtype=tf.int32)
    compiled(model).train_on_batch(np.array([[5, 5, 7], [-3, 7, 2**31 - 1]], np.int32), LABELS)
    counter = model.optimizer.row_state(embedding.params)["counter"]
    assert counter.key_dtype == tf.int32
    keys, _ = exported(counter)
    np.testing.assert_array_equal(keys, [-3, 5, 7, 2**31 - 1])
    np.testing.assert_allclose(model.optimizer.counts(embedding.params, keys).numpy(), [1, 2, 2, 1], rtol=1e-15)


@pytest.mark.parametrize("table_dtype, ids", [
    (tf.int64, tf.constant([[1, 2, 3]], tf.int32)),
    (tf.int32, tf.constant([[1, 2, 3]], tf.int64)),
    (tf.int64, tf.constant([["a", "b", "c"]])),
], ids=["int32_into_int64", "int64_into_int32", "string_into_int64"])
def test_ids_of_another_dtype_than_the_table_raise_naming_both(table_dtype, ids):
    _, embedding = build_model(key_dtype=table_dtype)
    message = f"{ids.dtype} ids is not matched with ShadowVariable with ids {table_dtype}"
    with pytest.raises(ValueError, match=re.escape(message)):
        embedding(ids)
    with pytest.raises(TypeError, match="params.key_dtype should be same with ids.dtype"):
        de.embedding_lookup(embedding.params, tf.reshape(ids, [-1]))


def test_string_ids_into_an_int64_model_raise_and_change_nothing():
    model, embedding = build_model()
    compiled(model).train_on_batch(BATCH, LABELS)
    before = snapshot(model, embedding)
    with pytest.raises(tf.errors.UnimplementedError, match="Cast string to int64 is not supported"):
        model.train_on_batch(np.array([["a", "b", "c"], ["d", "e", "f"]]), LABELS)
    assert_same_state(snapshot(model, embedding), before)


@pytest.mark.parametrize("hashing", ["fast", "strong"])
def test_hashed_string_ids_train(hashing):
    """The recipe for string ids: hash them to int64 ids inside the model."""
    def hashed(strings):
        if hashing == "fast":
            return tf.strings.to_hash_bucket_fast(strings, 2**63 - 1)
        return tf.strings.to_hash_bucket_strong(strings, 2**63 - 1, key=[7, 11])

    tf.keras.utils.set_random_seed(0)
    strings = tf.keras.Input(shape=(3,), dtype=tf.string)
    embedding = de.keras.layers.Embedding(DIM, initializer=tf.keras.initializers.Constant(0.1), name=unique_name())
    pooled = tf.keras.layers.GlobalAveragePooling1D()(embedding(tf.keras.layers.Lambda(hashed)(strings)))
    model = compiled(tf.keras.Model(strings, tf.keras.layers.Dense(1)(pooled)), tf_freqsgd.CounterSGD(0.5))
    batch = np.array([["user:1", "user:1", "item:é"], ["item:é", "user:2", "user:1"]])
    model.train_on_batch(batch, LABELS)
    model.train_on_batch(batch, LABELS)
    ids = hashed(tf.constant(batch)).numpy()
    keys, counts = exported(model.optimizer.dynamic_tables[embedding.params.name][1]["counter"])
    np.testing.assert_array_equal(keys, np.unique(ids))
    np.testing.assert_array_equal(counts.ravel(), [2 * np.sum(ids == key) for key in keys])
    keys, rows = exported(embedding.params)
    np.testing.assert_array_equal(keys, np.unique(ids))
    assert not np.allclose(rows, 0.1)


# Empty batches.

def test_a_batch_of_zero_rows_changes_no_table():
    model, embedding = build_model()
    compiled(model, OPTIMIZERS["RowwiseAdagradCounter"]()).train_on_batch(BATCH, LABELS)
    before = snapshot(model, embedding)
    model.train_on_batch(np.zeros((0, 3), np.int64), np.zeros((0, 1), np.float32))
    assert_same_state(snapshot(model, embedding), before, skip=["iterations"])


def test_rows_of_zero_ids_change_no_table():
    model, embedding = build_model(ids_per_row=None, pooling="sum")
    compiled(model).train_on_batch(BATCH, LABELS)
    before = snapshot(model, embedding)
    model.train_on_batch(np.zeros((2, 0), np.int64), LABELS)  # the dense layer's bias still learns
    assert_same_state(snapshot(model, embedding), before, skip=["iterations", "dense"])


def test_custom_loop_with_no_ids_changes_no_table():
    table = de.Variable(key_dtype=tf.int64, value_dtype=tf.float32, dim=DIM, name=unique_name(), initializer=0.1)
    optimizer = tf_freqsgd.CounterSGD(0.5)

    def step(ids):
        with tf.GradientTape() as tape:
            rows, trainable = de.embedding_lookup(table, ids, return_trainable=True, name="lookup")
            loss = tf.reduce_sum(rows)
        optimizer.apply_gradients([(tape.gradient(loss, trainable), trainable)])

    step(tf.constant([5, -(2**63)], tf.int64))
    counter = optimizer.dynamic_tables[table.name][1]["counter"]
    before = exported(table), exported(counter)
    step(tf.zeros([0], tf.int64))
    for got, want in zip((exported(table), exported(counter)), before):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


# Non-finite losses.

@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_non_finite_loss_raises_and_changes_nothing(name):
    model, embedding = build_model()
    compiled(model, OPTIMIZERS[name]()).train_on_batch(BATCH, LABELS)
    before = snapshot(model, embedding)
    new_ids = np.array([[5, 123456789, -(2**62)], [7, 7, -3]], np.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{name}: gradient for dynamic table '{embedding.params.name}' has a non-finite value"):
        model.train_on_batch(new_ids, np.array([[np.nan], [0.0]], np.float32))
    # Every table, the step counter included, is as before; the batch's new ids got no row.
    assert_same_state(snapshot(model, embedding), before)
    for table in tables(model, embedding).values():
        assert not np.isin([123456789, -(2**62)], exported(table)[0]).any()


# A checkpoint restored into a table of another width.

def test_restoring_into_another_embedding_width_is_refused(tmp_path):
    name = unique_name()
    model, _ = build_model(name)
    compiled(model).train_on_batch(BATCH, LABELS)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(tmp_path / "ckpt"))

    store = variable_scope._get_default_variable_store()._vars  # a fresh table of the same name
    for key in [key for key in store if key.startswith(f"{name}-parameter")]:
        del store[key]
    wider, _ = build_model(name, dim=2 * DIM)
    compiled(wider)
    # Before anything is restored: a clear error naming the table and both widths.
    with pytest.raises(ValueError, match=f"TFRA table '{name}-parameter' of width {DIM}; the model's has width {2 * DIM}"):
        saving.check_checkpoint(checkpoint, wider)
    # TFRA's own error, from the table's import, names neither table nor layer.
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"Expected shape \[\d+,{2 * DIM}\] for value, got \[\d+,{DIM}\]"):
        tf.train.Checkpoint(model=wider, optimizer=wider.optimizer).restore(checkpoint)
