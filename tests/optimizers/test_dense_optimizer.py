"""``dense_optimizer``: one compile trains the id tables with the frequency-aware rule and every
other variable with a Keras optimizer, in one step; saved and restored with the optimizer."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd

VOCAB, WIDTH, BATCH, STEPS = 50, 4, 16, 4
OPTIMIZERS = {
    "CounterSGD": lambda **kw: tf_freqsgd.CounterSGD(0.1, **kw),
    "RowwiseAdagradCounter": lambda **kw: tf_freqsgd.RowwiseAdagradCounter(0.1, **kw),
    "FrequencySGD": lambda **kw: tf_freqsgd.FrequencySGD({"items/embeddings": np.linspace(0.1, 1.0, VOCAB)}, 0.1,
                                                         **kw),
}


def model():
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input((3,), dtype=tf.int64)
    rows = tf.keras.layers.Embedding(VOCAB, WIDTH, name="items")(ids)
    hidden = tf.keras.layers.Dense(8, activation="relu", name="hidden")(tf.keras.layers.GlobalAveragePooling1D()(rows))
    return tf.keras.Model(ids, tf.keras.layers.Dense(1, name="score")(hidden))


def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, VOCAB, (BATCH * STEPS, 3)), rng.normal(size=(BATCH * STEPS, 1)).astype(np.float32)


def paired(name, **dense_kwargs):
    return OPTIMIZERS[name](dense_optimizer=tf.keras.optimizers.Adam(0.01, **dense_kwargs))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fit_equals_the_two_optimizers_applied_apart(name):
    """Traced fit with the pairing = the table stepped by the frequency-aware optimizer alone and
    the dense layers by Adam alone, on the same gradients."""
    ids, labels = data()
    trained = model()
    trained.compile(paired(name), "mse")
    trained.fit(ids, labels, batch_size=BATCH, shuffle=False, verbose=0)

    reference = model()
    sparse, dense = OPTIMIZERS[name](), tf.keras.optimizers.Adam(0.01)
    table, others = reference.trainable_variables[0], reference.trainable_variables[1:]
    for step in range(STEPS):
        batch = slice(step * BATCH, (step + 1) * BATCH)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.keras.losses.mse(labels[batch], reference(ids[batch])))
        gradients = tape.gradient(loss, reference.trainable_variables)
        sparse.apply_gradients([(gradients[0], table)])
        dense.apply_gradients(zip(gradients[1:], others))
    for got, expected in zip(trained.weights, reference.weights):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7, err_msg=got.name)
    optimizer = trained.optimizer
    if hasattr(optimizer, "counts"):
        np.testing.assert_array_equal(optimizer.counts(trained.weights[0]), sparse.counts(table))
    assert int(optimizer.dense_optimizer.iterations) == int(optimizer.applied_steps) == STEPS


def test_the_tables_keep_their_few_bytes_a_row():
    """Adam's slots are made for the dense layers only: the table's state is its counter."""
    trained = model()
    trained.compile(paired("CounterSGD"), "mse")
    trained.fit(*data(), batch_size=BATCH, verbose=0)
    table = trained.get_layer("items").embeddings
    per_row = [v for v in trained.optimizer.variables if v.shape.rank and v.shape[0] == VOCAB]
    assert [v.shape.as_list() for v in per_row] == [[VOCAB]]  # the counter alone
    dense_sizes = sum(v.shape.num_elements() for v in trained.optimizer.dense_optimizer.variables)
    assert dense_sizes == 1 + 2 * sum(v.shape.num_elements() for v in trained.trainable_variables if v is not table)


def test_checkpoint_resume_is_bit_identical(tmp_path):
    ids, labels = data()
    straight = model()
    straight.compile(paired("CounterSGD"), "mse")
    straight.fit(ids, labels, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)

    first = model()
    first.compile(paired("CounterSGD"), "mse")
    first.fit(ids, labels, batch_size=BATCH, shuffle=False, verbose=0)
    path = tf.train.Checkpoint(model=first, optimizer=first.optimizer).write(str(tmp_path / "ckpt"))
    resumed = model()
    resumed.compile(paired("CounterSGD"), "mse")
    tf.train.Checkpoint(model=resumed, optimizer=resumed.optimizer).read(path).assert_existing_objects_matched()
    resumed.fit(ids, labels, batch_size=BATCH, shuffle=False, verbose=0)
    for got, expected in zip(resumed.weights + resumed.optimizer.variables,
                             straight.weights + straight.optimizer.variables):
        np.testing.assert_array_equal(got.numpy(), expected.numpy(), err_msg=got.name)


def test_config_and_keras_file_round_trip(tmp_path):
    optimizer = tf_freqsgd.CounterSGD(0.1, dense_optimizer={"class_name": "Adam", "config": {"learning_rate": 0.003}},
                                      table_names=["items"])
    again = tf_freqsgd.CounterSGD.from_config(optimizer.get_config())
    assert isinstance(again.dense_optimizer, tf.keras.optimizers.Adam) and again.table_names == ("items",)
    assert again.dense_optimizer.learning_rate.numpy() == pytest.approx(0.003)

    ids, labels = data()
    trained = model()
    trained.compile(tf_freqsgd.CounterSGD(0.1, dense_optimizer="adam"), "mse")
    trained.fit(ids, labels, batch_size=BATCH, verbose=0)
    trained.save(tmp_path / "model.keras")
    loaded = tf.keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.optimizer.dense_optimizer).__name__ == "Adam"
    for got, expected in zip(loaded.optimizer.variables, trained.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(got), expected.numpy())


def test_a_checkpoint_without_the_pairing_is_refused_naming_it(tmp_path):
    ids, labels = data()
    trained = model()
    trained.compile(tf_freqsgd.CounterSGD(0.1), "mse")
    trained.fit(ids, labels, batch_size=BATCH, verbose=0)
    path = tf.train.Checkpoint(optimizer=trained.optimizer).write(str(tmp_path / "ckpt"))
    paired_optimizer = paired("CounterSGD")
    with pytest.raises(ValueError, match="dense_optimizer"):
        tf.train.Checkpoint(optimizer=paired_optimizer).read(path)


@pytest.mark.parametrize("dense_optimizer, message", [
    (lambda: tf.keras.optimizers.Adam(clipnorm=1.0), "sets clipnorm"),
    (lambda: tf.keras.optimizers.AdamW(weight_decay=0.01), "sets weight_decay"),
    (lambda: tf_freqsgd.CounterSGD(0.1), "not CounterSGD"),
    (lambda: tf.keras.optimizers.legacy.Adam(), "not Adam"),
])
def test_dense_optimizers_that_cannot_pair_are_named(dense_optimizer, message):
    with pytest.raises(ValueError, match=message):
        tf_freqsgd.CounterSGD(0.1, dense_optimizer=dense_optimizer())


@pytest.mark.parametrize("table_names", ["", [""], [3]])
def test_bad_table_names_are_named(table_names):
    with pytest.raises(ValueError, match="table_names"):
        tf_freqsgd.CounterSGD(0.1, dense_optimizer="adam", table_names=table_names)
