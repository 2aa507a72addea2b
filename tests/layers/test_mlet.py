"""MLETEmbedding: factorised training, collapse equivalence, sparse gradients under the
frequency-aware optimizers, saving, serving export, TFRA tables, bad input."""

import numpy as np
import pytest

import tf_freqsgd
import tensorflow as tf

from tf_freqsgd.export import export_for_serving, saved_model_ops
from tf_freqsgd.layers import MLETEmbedding

IDS = np.array([[0, 3, 3], [7, 1, 0], [9, 9, 2]], np.int64)


def trained_layer(layer, steps=5, learning_rate=0.5, ids=IDS):
    """A few steps of CounterSGD on ``sum((layer(ids) - 1)^2)``; returns the losses."""
    optimizer = tf_freqsgd.CounterSGD(learning_rate)
    losses = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(ids) - 1.0))
        optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables))
        losses.append(float(loss))
    return losses, optimizer


@pytest.mark.parametrize("inner_dim", [3, 16])
def test_collapse_returns_a_plain_embedding_with_the_same_outputs(inner_dim):
    tf.keras.utils.set_random_seed(1)
    layer = MLETEmbedding(10, 4, inner_dim, name="items")
    trained_layer(layer)
    collapsed = layer.collapse()
    assert type(collapsed) is tf.keras.layers.Embedding
    assert collapsed.name == "items"
    assert collapsed.embeddings.shape == (10, 4)
    np.testing.assert_allclose(collapsed(IDS), layer(IDS), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.collapsed_table(),
                               layer.embeddings.numpy() @ layer.projection.numpy(), rtol=1e-6, atol=1e-7)
    assert layer.inference_parameter_count() == 10 * 4
    assert layer.training_parameter_count() == 10 * inner_dim + inner_dim * 4


def test_reference_initialisation():
    tf.keras.utils.set_random_seed(0)
    layer = MLETEmbedding(2000, 64, 128)
    layer.build((None,))
    table, projection = layer.embeddings.numpy(), layer.projection.numpy()
    assert table.shape == (2000, 128) and projection.shape == (128, 64)
    # Keras' Embedding default, U(-0.05, 0.05), and N(0, 0.25^2) for the projection.
    assert np.abs(table).max() <= 0.05 and abs(table.std() - 0.05 / np.sqrt(3)) < 1e-3
    assert abs(projection.std() - 0.25) < 0.01 and abs(projection.mean()) < 0.01
    assert not layer.variables[1].name.endswith("bias:0") and len(layer.trainable_variables) == 2


def test_table_gradient_is_sparse_and_counter_sgd_counts_its_rows():
    tf.keras.utils.set_random_seed(0)
    layer = MLETEmbedding(10, 4, 8)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(IDS))
    table_gradient, projection_gradient = tape.gradient(loss, [layer.embeddings, layer.projection])
    assert isinstance(table_gradient, tf.IndexedSlices)
    assert not isinstance(projection_gradient, tf.IndexedSlices)

    losses, optimizer = trained_layer(layer, steps=20)
    assert losses[-1] < 0.1 * losses[0]
    # One counter per table row, counting each id's occurrences over the 20 steps.
    expected = 20 * np.bincount(IDS.ravel(), minlength=10)
    np.testing.assert_array_equal(optimizer.counts(layer.embeddings).numpy(), expected)


def test_trains_in_a_keras_model_with_frequency_sgd():
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    embedding = MLETEmbedding(10, 4, 8, name="mlet")
    score = tf.keras.layers.Dense(1)(tf.keras.layers.GlobalAveragePooling1D()(embedding(ids)))
    model = tf.keras.Model(ids, score)
    frequencies = np.bincount(IDS.ravel(), minlength=10) / 1.0 + 1.0
    model.compile(tf_freqsgd.FrequencySGD({"mlet/embeddings": frequencies}, 0.2), "mse")
    labels = np.array([[1.0], [-1.0], [0.5]], np.float32)
    history = model.fit(IDS, labels, epochs=15, batch_size=3, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]


def test_config_and_keras_save_round_trip(tmp_path):
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    layer = MLETEmbedding(10, 4, 6, projection_initializer=tf.keras.initializers.RandomNormal(stddev=0.5),
                          name="mlet")
    model = tf.keras.Model(ids, layer(ids))
    config = layer.get_config()
    assert {key: config[key] for key in ("input_dim", "output_dim", "inner_dim", "dynamic_table")} == {
        "input_dim": 10, "output_dim": 4, "inner_dim": 6, "dynamic_table": False}
    clone = MLETEmbedding.from_config(config)
    assert clone.projection_initializer.stddev == 0.5
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    assert isinstance(loaded.layers[1], MLETEmbedding)
    np.testing.assert_array_equal(loaded(IDS), model(IDS))


def test_serving_export_holds_the_collapsed_table_only(tmp_path):
    tf.keras.utils.set_random_seed(0)
    users = tf.keras.Input(shape=(), dtype=tf.int64, name="user_id")
    items = tf.keras.Input(shape=(), dtype=tf.int64, name="item_id")
    user_vector = MLETEmbedding(10, 4, 32, name="user")(users)
    item_vector = MLETEmbedding(12, 4, 32, name="item")(items)
    model = tf.keras.Model({"user_id": users, "item_id": items}, tf.keras.layers.Dot(axes=-1)([user_vector, item_vector]))
    trained_layer(model.get_layer("user"), ids=np.arange(10))
    export_dir = str(tmp_path / "1")
    export_for_serving(model, export_dir)

    served = tf.saved_model.load(export_dir)
    shapes = sorted(tuple(variable.shape) for variable in served.variables)
    assert shapes == [(10, 4), (12, 4)]  # n x d each: no inner table, no projection
    query = {"user_id": tf.constant([0, 9, 3], tf.int64), "item_id": tf.constant([11, 2, 2], tf.int64)}
    (scores,) = served.signatures["serving_default"](**query).values()
    np.testing.assert_allclose(scores, model(query), rtol=1e-5, atol=1e-6)
    assert not any(op.startswith("ResourceSparseApply") for op, _ in saved_model_ops(export_dir))


def test_dynamic_table_trains_collapses_and_exports(tmp_path):
    de = pytest.importorskip("tensorflow_recommenders_addons.dynamic_embedding")
    tf.keras.utils.set_random_seed(0)
    hashed = np.array([[5, 2**40, -3], [7, 5, 2**62 + 1]], np.int64)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64, name="ids")
    layer = MLETEmbedding(None, 4, 8, dynamic_table=True,
                          embeddings_initializer=tf.keras.initializers.Constant(0.1), name="dyn_mlet")
    model = tf.keras.Model(ids, layer(ids))
    assert isinstance(layer.inner_table, de.keras.layers.Embedding)
    losses, _ = trained_layer(layer, steps=10, ids=hashed)
    assert losses[-1] < 0.5 * losses[0]
    assert layer.inference_parameter_count() == 5 * 4  # five distinct ids hold rows

    collapsed = layer.collapse()
    assert type(collapsed).__name__ == "StaticEmbedding"
    unseen = np.array([[11, 5, -(2**50)]], np.int64)
    for batch in (hashed, unseen):  # unseen ids get the constant initializer's row, projected
        np.testing.assert_allclose(collapsed(batch), layer(batch), rtol=1e-5, atol=1e-6)

    export_dir = str(tmp_path / "1")
    export_for_serving(model, export_dir)
    assert not any(op.startswith("TFRA>") for op, _ in saved_model_ops(export_dir))
    (served,) = tf.saved_model.load(export_dir).signatures["serving_default"](ids=tf.constant(hashed)).values()
    np.testing.assert_allclose(served, layer(hashed), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arguments, message", [
    ((0, 4, 8), "`input_dim` must be a positive integer; got 0"),
    ((None, 4, 8), "`input_dim` must be a positive integer; got None"),
    ((10, -1, 8), "`output_dim` must be a positive integer; got -1"),
    ((10, 4, "8"), "`inner_dim` must be a positive integer; got '8'"),
    ((10, 4, 2.0), "`inner_dim` must be a positive integer; got 2.0"),
])
def test_bad_arguments_are_named(arguments, message):
    with pytest.raises(ValueError, match=f"MLETEmbedding: {message}"):
        MLETEmbedding(*arguments)


def test_collapse_before_build_and_dynamic_table_order_are_refused():
    with pytest.raises(RuntimeError, match="call the layer .* before collapse"):
        MLETEmbedding(10, 4, 8).collapse()
    pytest.importorskip("tensorflow_recommenders_addons")
    layer = MLETEmbedding(None, 4, 8, dynamic_table=True, name="dyn_refused")
    layer(tf.constant([1, 2], tf.int64))
    with pytest.raises(TypeError, match="dynamic table, which has no fixed row order"):
        layer.collapsed_table()
