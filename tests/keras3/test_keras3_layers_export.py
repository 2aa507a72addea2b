"""MLET and PEP layers train under the Keras 3 optimizers, save and load, and the serving export
writes a stock-TensorFlow SavedModel of a Keras 3 model (TensorFlow backend)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from tf_freqsgd.export import export_for_serving, saved_model_ops
from tf_freqsgd.layers import MLETEmbedding, PEPEmbedding

pytestmark = [
    pytest.mark.skipif(tf_freqsgd.active_keras() != "keras3", reason="tf.keras is tf_keras (Keras 3 runs: TF_USE_LEGACY_KERAS=0)"),
    pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow backend"),
]


def model_over(layer):
    ids = keras.Input((2,), dtype="int64", name="ids")
    score = keras.layers.Dense(1, name="score")(keras.layers.Flatten()(layer(ids)))
    model = keras.Model(ids, score)
    model.compile(tf_freqsgd.CounterSGD(0.1), "mse")
    return model


def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 100, (128, 2)), np.ones((128, 1), np.float32)


@pytest.mark.parametrize("make", [lambda: MLETEmbedding(100, 4, 16, name="table"),
                                  lambda: PEPEmbedding(100, 8, name="table"),
                                  lambda: PEPEmbedding(100, 8, threshold_init=-3.0, name="table")],  # served sparse
                         ids=["mlet", "pep", "pep-served-sparse"])
def test_layers_train_save_and_export(make, tmp_path):
    keras.utils.set_random_seed(0)
    model = model_over(make())
    history = model.fit(*data(), batch_size=16, epochs=3, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    ids = data()[0][:8]
    np.testing.assert_allclose(loaded.predict(ids, verbose=0), model.predict(ids, verbose=0), rtol=1e-6)

    export_for_serving(model, str(tmp_path / "serving" / "1"))
    assert not any(op.startswith(("TFRA>", "ResourceSparseApply")) for op, _ in saved_model_ops(str(tmp_path / "serving" / "1")))
    served = tf.saved_model.load(str(tmp_path / "serving" / "1")).signatures["serving_default"]
    np.testing.assert_allclose(served(ids=tf.constant(ids))["score"].numpy(), model.predict(ids, verbose=0), rtol=1e-5,
                               atol=1e-6)


def test_row_embedding_is_keras_embedding_with_a_row_read():
    from tf_freqsgd.layers import RowEmbedding

    keras.utils.set_random_seed(0)
    row, stock = RowEmbedding(50, 4), keras.layers.Embedding(50, 4)
    ids = np.array([[1, 7], [7, 49]])
    row.build(ids.shape)
    stock.build(ids.shape)
    stock.embeddings.assign(row.embeddings.numpy())
    np.testing.assert_array_equal(row(ids).numpy(), stock(ids).numpy())
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(row(ids))
    assert isinstance(tape.gradient(loss, row.trainable_variables)[0], tf.IndexedSlices)
    assert keras.layers.deserialize(keras.layers.serialize(row)).get_config() == row.get_config()
