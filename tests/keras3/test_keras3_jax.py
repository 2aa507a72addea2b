"""The Keras 3 optimizers on JAX (run with KERAS_BACKEND=jax): every gradient is dense, each row with
a non-zero gradient row counts as present (once), and the update follows the NumPy reference on the
present rows; rows absent are left as they were. A non-finite step is skipped."""

import keras
import numpy as np
import pytest

import tf_freqsgd
from optimizer_cases import ROWS, initial_weights, make_pair, random_batches

pytestmark = [
    pytest.mark.skipif(tf_freqsgd.active_keras() != "keras3", reason="tf.keras is tf_keras (Keras 3 runs: TF_USE_LEGACY_KERAS=0)"),
    pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX backend (KERAS_BACKEND=jax)"),
]

if keras.backend.backend() == "jax":
    import jax

    jax.config.update("jax_enable_x64", True)

CASES = {
    "CounterSGD-defaults": ("CounterSGD", {}),
    "CounterSGD-presence-decay": ("CounterSGD", {"counting": "presence", "counter_halflife": 3.0}),
    "CounterSGD-count-clamps-warmup": ("CounterSGD", {"estimate": "count", "min_scale": 0.6, "max_scale": 0.9,
                                                      "warmup_steps": 2}),
    "CounterSGD-decay-l2": ("CounterSGD", {"weight_decay": 0.05, "weight_decay_mode": "l2"}),
    "CounterSGD-nesterov": ("CounterSGD", {"momentum": 0.5, "nesterov": True}),
    "RowwiseAdagradCounter-defaults": ("RowwiseAdagradCounter", {}),
    "RowwiseAdagradCounter-decay": ("RowwiseAdagradCounter", {"counter_halflife": 4.0, "weight_decay": 0.05}),
}


def dense_batches(steps=6):
    """Dense gradients (rows of repeated ids summed, absent rows zero) and each step's present ids."""
    for ids, values in random_batches(steps=steps):
        gradient = np.zeros((ROWS, values.shape[1]), np.float32)
        np.add.at(gradient, ids, values)
        yield gradient, np.unique(ids)


@pytest.mark.parametrize("case", CASES)
def test_dense_steps_follow_the_reference_on_present_rows(case):
    class_name, options = CASES[case]
    optimizer, reference = make_pair(class_name, learning_rate=0.1, **options)
    variable = keras.Variable(initial_weights(), name="table")
    expected = variable.numpy()
    for gradient, present in dense_batches():
        optimizer.apply_gradients([(gradient, variable)])
        # The reference sees each present row once: the gradient row is its summed gradient.
        expected = reference.sparse_step(expected, present, gradient[present])
    np.testing.assert_allclose(np.asarray(variable.numpy()), expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.asarray(optimizer.counts(variable)), reference.current_counts(), rtol=1e-9)


def test_frequency_sgd_follows_the_reference():
    table = np.random.default_rng(3).uniform(0.05, 3.0, size=ROWS)
    optimizer, reference = make_pair("FrequencySGD", frequencies={"table": table}, learning_rate=0.1)
    variable = keras.Variable(initial_weights(), name="table")
    expected = variable.numpy()
    for gradient, present in dense_batches():
        optimizer.apply_gradients([(gradient, variable)])
        expected = reference.sparse_step(expected, present, gradient[present])
    np.testing.assert_allclose(np.asarray(variable.numpy()), expected, rtol=2e-5, atol=2e-6)


def build_model(optimizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(20, 4, name="items"),
                              keras.layers.Flatten(), keras.layers.Dense(1, name="head")])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def data(n=48):
    rng = np.random.default_rng(0)
    return rng.integers(0, 20, (n, 3)), rng.normal(size=(n, 1)).astype(np.float32)


def test_fit_counts_presence_and_skips_a_non_finite_step(tmp_path):
    ids, labels = data()
    model = build_model(tf_freqsgd.CounterSGD(0.05))
    model.fit(ids, labels, batch_size=16, verbose=0, shuffle=False)
    expected = sum(np.isin(np.arange(20), ids[i:i + 16]) for i in range(0, 48, 16))
    np.testing.assert_array_equal(np.asarray(model.optimizer.counts(model.get_layer("items").embeddings)), expected)
    before = [np.asarray(w.numpy()).copy() for w in model.weights]
    bad = labels[:16].copy()
    bad[0] = np.nan
    model.fit(ids[:16], bad, batch_size=16, verbose=0)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(np.asarray(new.numpy()), old)
    assert int(model.optimizer.applied_steps.numpy()) == 3

    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(restored.numpy()), np.asarray(saved.numpy()))
