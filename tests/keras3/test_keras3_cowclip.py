"""CowClip on the Keras 3 counter optimizers, against the NumPy reference: on TensorFlow with raw
sparse gradients (repeated ids, both sparse paths), on JAX with dense gradients, where each row
present counts one occurrence. Run on both backends (KERAS_BACKEND=jax for JAX)."""

import keras
import numpy as np
import pytest

import tf_freqsgd
from optimizer_cases import COWCLIP_CASES, ROWS, cowclip_batches, initial_weights, make_pair, sparse_gradient

pytestmark = pytest.mark.skipif(tf_freqsgd.active_keras() != "keras3",
                                reason="tf.keras is tf_keras (Keras 3 runs: TF_USE_LEGACY_KERAS=0)")
if keras.backend.backend() == "jax":
    import jax

    jax.config.update("jax_enable_x64", True)  # the counters' (README, JAX)


def check(class_name, options, gradients):
    """Applies each ``(gradient, ids, rows)`` and the reference's step on ``ids``, ``rows``; then
    compares the weights and the config."""
    optimizer, reference = make_pair(class_name, learning_rate=0.1, **options)
    variable = keras.Variable(initial_weights(), name="table")
    expected = variable.numpy().astype(np.float64)
    for gradient, ids, rows in gradients:
        optimizer.apply_gradients([(gradient, variable)])
        expected = reference.sparse_step(expected, ids, rows)
    np.testing.assert_allclose(np.asarray(variable.numpy()), expected, rtol=2e-5, atol=2e-6)
    config = optimizer.get_config()
    assert (config["cowclip_ratio"], config["cowclip_min_norm"]) == (
        options["cowclip_ratio"], options.get("cowclip_min_norm", 1e-5))
    assert type(optimizer).from_config(config).get_config() == config


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow backend")
@pytest.mark.parametrize("class_name,options", COWCLIP_CASES)
def test_tensorflow_sparse_steps_follow_the_reference(class_name, options, sparse_apply_path):
    gradients = [(sparse_gradient(ids, values), ids, values) for ids, values in cowclip_batches()]
    check(class_name, options, gradients)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX backend (KERAS_BACKEND=jax)")
@pytest.mark.parametrize("class_name,options", COWCLIP_CASES)
def test_jax_dense_steps_follow_the_reference_with_one_occurrence_per_row(class_name, options):
    gradients = []
    for ids, values in cowclip_batches():
        dense = np.zeros((ROWS, values.shape[1]), np.float32)
        np.add.at(dense, ids, values)
        present = np.unique(ids)
        # The reference sees each row present once, with its summed gradient.
        gradients.append((dense, present, dense[present]))
    check(class_name, options, gradients)
