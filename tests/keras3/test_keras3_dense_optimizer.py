"""``dense_optimizer`` on the Keras 3 front (TensorFlow and JAX backends): in one compile, the id
table trains by the frequency-aware rule and the dense layer by Adam, exactly as each does alone;
the .keras round trip keeps both optimizers' state."""

import os

import keras
import numpy as np
import pytest

import tf_freqsgd

pytestmark = pytest.mark.skipif(tf_freqsgd.active_keras() != "keras3",
                                reason="tf.keras is tf_keras (Keras 3 runs: TF_USE_LEGACY_KERAS=0)")
if keras.backend.backend() == "jax":
    import jax

    jax.config.update("jax_enable_x64", True)  # the counters' (README, JAX)
VOCAB, WIDTH, BATCH, STEPS = 30, 4, 16, 4


def two_heads(train_table=True, train_dense=True):
    """A table-only head and a dense-only head, each with its own loss: each part's gradient
    depends on its own weights alone, so each trains as it would by itself."""
    keras.utils.set_random_seed(0)
    ids, features = keras.Input((3,), dtype="int32"), keras.Input((5,))
    table = keras.layers.Embedding(VOCAB, WIDTH, name="items", trainable=train_table)
    pooled = keras.layers.GlobalAveragePooling1D()(table(ids))
    table_head = keras.layers.Dense(1, kernel_initializer="ones", trainable=False, use_bias=False, name="fixed")(pooled)
    dense_head = keras.layers.Dense(1, name="head", trainable=train_dense)(features)
    return keras.Model([ids, features], [table_head, dense_head])


def data():
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, VOCAB, (BATCH * STEPS, 3)).astype("int32"), rng.normal(size=(BATCH * STEPS, 5))]
    return inputs, [rng.normal(size=(BATCH * STEPS, 1)), rng.normal(size=(BATCH * STEPS, 1))]


def fit(model, optimizer):
    model.compile(optimizer, ["mse", "mse"])
    model.fit(*data(), batch_size=BATCH, shuffle=False, verbose=0)
    return model


def test_each_part_trains_as_its_optimizer_alone():
    paired = fit(two_heads(), tf_freqsgd.CounterSGD(0.5, dense_optimizer=keras.optimizers.Adam(0.01)))
    table_alone = fit(two_heads(train_dense=False), tf_freqsgd.CounterSGD(0.5))
    dense_alone = fit(two_heads(train_table=False), keras.optimizers.Adam(0.01))
    np.testing.assert_allclose(paired.get_layer("items").embeddings.numpy(),
                               table_alone.get_layer("items").embeddings.numpy(), rtol=1e-6, atol=1e-7)
    for got, expected in zip(paired.get_layer("head").weights, dense_alone.get_layer("head").weights):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)
    assert int(paired.optimizer.dense_optimizer.iterations.numpy()) == STEPS
    # The table's state is its counter: no Adam slot of its shape.
    assert not any(tuple(v.shape) == (VOCAB, WIDTH) for v in paired.optimizer.variables)


def test_keras_file_round_trip(tmp_path):
    trained = fit(two_heads(), tf_freqsgd.CounterSGD(0.5, dense_optimizer="adam"))
    trained.save(os.fspath(tmp_path / "model.keras"))
    loaded = keras.models.load_model(os.fspath(tmp_path / "model.keras"))
    assert type(loaded.optimizer.dense_optimizer).__name__ == "Adam"
    assert len(loaded.optimizer.variables) == len(trained.optimizer.variables)
    for got, expected in zip(loaded.optimizer.variables, trained.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(expected))


@pytest.mark.parametrize("dense_optimizer, message", [
    (lambda: keras.optimizers.Adam(clipnorm=1.0), "sets clipnorm"),
    (lambda: tf_freqsgd.CounterSGD(0.1), "not CounterSGD"),
])
def test_dense_optimizers_that_cannot_pair_are_named(dense_optimizer, message):
    with pytest.raises(ValueError, match=message):
        tf_freqsgd.CounterSGD(0.1, dense_optimizer=dense_optimizer())
