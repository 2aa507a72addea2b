"""The Keras 3 optimizers on the TensorFlow backend: the NumPy reference on both sparse paths,
compile by name, fit, the .keras round trip with exact resume, schedules, clipping, the
LossScaleOptimizer, the step checks and restore checks, and the other Keras' message."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from optimizer_cases import (COUNTER_OPTIONS, FREQUENCY_OPTIONS, ROWS, SGD_ONLY_OPTIONS, initial_weights, make_pair,
                             random_batches, sparse_gradient)

pytestmark = [
    pytest.mark.skipif(tf_freqsgd.active_keras() != "keras3", reason="tf.keras is tf_keras (Keras 3 runs: TF_USE_LEGACY_KERAS=0)"),
    pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow backend"),
]
VOCAB, WIDTH = 20, 4


def run_both(optimizer, reference, mode, steps=6):
    variable = keras.Variable(initial_weights(), name="table")
    expected = variable.numpy()

    def apply(gradient):
        optimizer.apply_gradients([(gradient, variable)])

    if mode == "function":
        apply = tf.function(apply, reduce_retracing=True)
    for ids, values in random_batches(steps=steps):
        apply(sparse_gradient(ids, values))
        expected = reference.sparse_step(expected, ids, values)
    return variable, expected


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("class_name,options", [
    *[pytest.param("CounterSGD", o, id=f"CounterSGD-{k}") for k, o in {**COUNTER_OPTIONS, **SGD_ONLY_OPTIONS}.items()],
    *[pytest.param("RowwiseAdagradCounter", o, id=f"RowwiseAdagradCounter-{k}") for k, o in COUNTER_OPTIONS.items()],
])
def test_counter_rules_match_the_reference(class_name, options, mode, sparse_apply_path):
    optimizer, reference = make_pair(class_name, learning_rate=0.1, **options)
    assert isinstance(optimizer, keras.optimizers.Optimizer)
    variable, expected = run_both(optimizer, reference, mode)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(optimizer.counts(variable).numpy(), reference.current_counts(), rtol=1e-5)


@pytest.mark.parametrize("name,options", FREQUENCY_OPTIONS.items(), ids=list(FREQUENCY_OPTIONS))
def test_frequency_sgd_matches_the_reference(name, options, sparse_apply_path):
    table = np.random.default_rng(3).uniform(0.05, 3.0, size=ROWS)
    optimizer, reference = make_pair("FrequencySGD", frequencies={"table": table}, learning_rate=0.1, **options)
    variable, expected = run_both(optimizer, reference, "function")
    np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-5, atol=2e-6)


def build_model(optimizer, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,), dtype="int64"), keras.layers.Embedding(VOCAB, WIDTH, name="items"),
                              keras.layers.Flatten(), keras.layers.Dense(1, name="head")])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def data(seed=0, n=64):
    rng = np.random.default_rng(seed)
    return rng.integers(0, VOCAB, (n, 3)), rng.normal(size=(n, 1)).astype(np.float32)


@pytest.mark.parametrize("name,cls", [("counter_sgd", "CounterSGD"), ("rowwise_adagrad_counter", "RowwiseAdagradCounter")])
def test_compile_by_name(name, cls):
    model = build_model(name)
    assert type(model.optimizer) is getattr(tf_freqsgd.optimizers.keras3, cls)


def test_fit_counts_every_occurrence(sparse_apply_path):
    model = build_model(tf_freqsgd.CounterSGD(0.05))
    ids, labels = data()
    model.fit(ids, labels, batch_size=len(ids), verbose=0)
    counts = model.optimizer.counts(model.get_layer("items").embeddings).numpy()
    np.testing.assert_array_equal(counts, np.bincount(ids.ravel(), minlength=VOCAB))


OPTIMIZERS = {
    "counter_sgd": lambda: tf_freqsgd.CounterSGD(0.05, counter_halflife=5.0, weight_decay=0.01, momentum=0.5),
    "rowwise_adagrad_counter": lambda: tf_freqsgd.RowwiseAdagradCounter(0.05, counting="presence"),
    "frequency_sgd": lambda: tf_freqsgd.FrequencySGD({"items/embeddings": np.linspace(0.1, 2.0, VOCAB)}, 0.05,
                                                     estimate="count"),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_keras_file_round_trip_resumes_exactly(tmp_path, name):
    ids, labels = data()
    model = build_model(OPTIMIZERS[name]())
    model.fit(ids, labels, batch_size=16, epochs=2, verbose=0, shuffle=False)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
    model.fit(ids, labels, batch_size=16, epochs=1, verbose=0, shuffle=False)
    loaded.fit(ids, labels, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for uninterrupted, resumed in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(resumed.numpy(), uninterrupted.numpy())


def test_schedules_and_clipping_follow_the_reference(sparse_apply_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    optimizer = tf_freqsgd.CounterSGD(schedule, clipvalue=0.3)
    _, reference = make_pair("CounterSGD", learning_rate=lambda step: 0.1 * 0.5 ** step)
    variable = keras.Variable(initial_weights(), name="table")
    expected = variable.numpy()
    for ids, values in random_batches(steps=4):
        optimizer.apply_gradients([(sparse_gradient(ids, values), variable)])
        expected = reference.sparse_step(expected, ids, np.clip(values, -0.3, 0.3))
    np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-5, atol=2e-6)


def nan_batch(ids, labels):
    labels = labels.copy()
    labels[2] = np.nan
    return ids, labels


def test_a_nan_label_raises_and_writes_nothing(sparse_apply_path):
    model = build_model(tf_freqsgd.CounterSGD(0.05))
    ids, labels = data()
    model.fit(ids[:16], labels[:16], batch_size=16, verbose=0)
    before = [v.numpy().copy() for v in model.weights + [model.optimizer.applied_steps]]
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite value"):
        model.fit(*nan_batch(ids[16:32], labels[16:32]), batch_size=16, verbose=0)
    for old, new in zip(before, model.weights + [model.optimizer.applied_steps]):
        np.testing.assert_array_equal(new.numpy(), old)


def test_skip_drops_the_step_and_its_t(sparse_apply_path):
    ids, labels = data(n=48)
    bad_ids, bad_labels = nan_batch(ids[16:32], labels[16:32])
    skipping = build_model(tf_freqsgd.CounterSGD(0.05, non_finite="skip"))
    skipping.fit(np.concatenate([ids[:16], bad_ids, ids[32:]]), np.concatenate([labels[:16], bad_labels, labels[32:]]),
                 batch_size=16, verbose=0, shuffle=False)
    clean = build_model(tf_freqsgd.CounterSGD(0.05, non_finite="skip"))
    clean.fit(np.concatenate([ids[:16], ids[32:]]), np.concatenate([labels[:16], labels[32:]]), batch_size=16,
              verbose=0, shuffle=False)
    for got, want in zip(skipping.weights, clean.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert int(skipping.optimizer.applied_steps.numpy()) == 2  # iterations counts the skipped call too


def test_loss_scale_optimizer_skips_keep_t():
    optimizer = keras.optimizers.LossScaleOptimizer(tf_freqsgd.CounterSGD(0.1))
    variable = keras.Variable(initial_weights(), name="table")
    optimizer.apply_gradients([(sparse_gradient(np.array([1, 2]), np.ones((2, 3), np.float32)), variable)])
    before = variable.numpy()
    optimizer.apply_gradients([(sparse_gradient(np.array([1]), np.full((1, 3), np.inf, np.float32)), variable)])
    np.testing.assert_array_equal(variable.numpy(), before)
    assert int(optimizer.inner_optimizer.applied_steps.numpy()) == 1


def test_a_wrong_width_gradient_raises_before_any_write():
    optimizer = tf_freqsgd.CounterSGD(0.1)
    first, second = (keras.Variable(np.ones((VOCAB, WIDTH), np.float32), name=n) for n in ("first", "second"))
    optimizer.build([first, second])
    before = [v.numpy().copy() for v in [first, second] + optimizer.variables]
    good = tf.IndexedSlices(tf.ones([2, WIDTH]), tf.constant([1, 2]), tf.constant([VOCAB, WIDTH]))
    wide = tf.IndexedSlices(tf.ones([2, WIDTH + 1]), tf.constant([1, 2]), tf.constant([VOCAB, WIDTH + 1]))
    with pytest.raises(ValueError, match=r"second.* has shape \(2, 5\)"):
        optimizer.apply_gradients([(good, first), (wide, second)])
    for old, new in zip(before, [first, second] + optimizer.variables):
        np.testing.assert_array_equal(new.numpy(), old)


def test_a_checkpoint_of_other_settings_raises_before_writing(tmp_path):
    saved = build_model(tf_freqsgd.CounterSGD(0.1, counter_halflife=3.0))
    saved.fit(*data(), batch_size=16, verbose=0)
    path = tf.train.Checkpoint(model=saved).save(str(tmp_path / "ckpt"))
    target = build_model(tf_freqsgd.CounterSGD(0.1), seed=1)
    target.fit(*data(1), batch_size=16, verbose=0)
    before = [v.numpy().copy() for v in target.weights]
    with pytest.raises(ValueError, match="counter_halflife is 3.0 in the checkpoint and absent here"):
        tf.train.Checkpoint(model=target).restore(path)
    for old, new in zip(before, target.weights):
        np.testing.assert_array_equal(new.numpy(), old)


def test_state_is_four_bytes_a_row():
    optimizer = tf_freqsgd.CounterSGD()
    optimizer.build([keras.Variable(np.zeros((1000, 16), np.float32))])
    assert tf_freqsgd.optimizer_state_bytes(optimizer, rows=1000) == 4 * 1000


def test_a_tf_keras_model_names_the_fix():
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([tf_keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="Keras 3 one; a tf_keras .* model needs tf_freqsgd.optimizers.keras2"):
        model.compile(optimizer=tf_freqsgd.CounterSGD(), loss="mse")
