"""Counters, frequency estimates and effective per-row learning rates read from the optimizers."""

import math

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from tf_freqsgd.models.embeddings import make_embedding
from tf_freqsgd.models.row_state import batch_frequency, counter_values, frequency_slots, learning_rates

BATCHES = [np.array([0, 0, 3, 5]), np.array([3, 0, 1, 1]), np.array([5, 5, 5, 2])]
ROWS, LR = 6, 0.2


def trained(kind, optimizer, batches=BATCHES):
    """An embedding of ``ROWS`` ids trained on ``batches`` (loss: sum of the looked-up rows)."""
    tf.keras.utils.set_random_seed(0)
    layer = make_embedding(kind, ROWS, 3, name="rows")
    layer(tf.constant([0], tf.int64))
    if kind == "dynamic" and isinstance(optimizer, tf.keras.optimizers.legacy.Optimizer):
        from tensorflow_recommenders_addons import dynamic_embedding as de

        de.DynamicEmbeddingOptimizer(optimizer)
    for batch in batches:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(tf.constant(batch, tf.int64)))
        variables = layer.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return layer


def occurrences(batches=BATCHES):
    return np.bincount(np.concatenate(batches), minlength=ROWS).astype(np.float64)


@pytest.mark.parametrize("kind", ["table", "dynamic"])
def test_batch_frequency_is_the_estimate_of_the_step_being_trained(kind):
    optimizer = tf_freqsgd.CounterSGD(LR)
    layer = trained(kind, optimizer, BATCHES[:2])
    ids = tf.constant([5, 0, 5, 4], tf.int64)
    # Step 3: counts so far plus this batch's occurrences, over N_3 = 3.
    counts = occurrences(BATCHES[:2]) + np.bincount(ids.numpy(), minlength=ROWS)
    np.testing.assert_allclose(batch_frequency(optimizer, layer, ids), counts[ids.numpy()] / 3, rtol=1e-6)


def test_batch_frequency_with_half_life_and_presence_counting():
    halflife = 2.0
    optimizer = tf_freqsgd.RowwiseAdagradCounter(LR, counter_halflife=halflife, counting="presence")
    layer = trained("table", optimizer, BATCHES[:2])
    ids = tf.constant([0, 1, 4], tf.int64)
    decay = lambda steps: 2.0 ** (-steps / halflife)  # noqa: E731
    # Row 0 seen at steps 1 and 2, row 1 at step 2, row 4 never; each adds 1 (presence) at step 3.
    counts = np.array([(1 * decay(1) + 1) * decay(1) + 1, 1 * decay(1) + 1, 1])
    normalizer = (1 - decay(3)) / (1 - decay(1))
    np.testing.assert_allclose(batch_frequency(optimizer, layer, ids), counts / normalizer, rtol=1e-6)


def test_batch_frequency_needs_counters():
    optimizer = tf.keras.optimizers.legacy.SGD(LR)
    layer = trained("table", optimizer, BATCHES[:1])
    with pytest.raises(TypeError, match="SGD keeps no counters: use CounterSGD or RowwiseAdagradCounter"):
        batch_frequency(optimizer, layer, tf.constant([0], tf.int64))


def test_frequency_slots_need_a_built_tf_freqsgd_optimizer():
    layer = make_embedding("table", ROWS, 3, name="rows")
    layer(tf.constant([0]))
    with pytest.raises(ValueError, match="CounterSGD is not built yet"):
        frequency_slots(tf_freqsgd.CounterSGD(LR), layer)
    with pytest.raises(TypeError, match="Adagrad is not a tf_freqsgd optimizer"):
        frequency_slots(tf.keras.optimizers.legacy.Adagrad(LR), layer)


@pytest.mark.parametrize("kind", ["table", "dynamic"])
def test_counter_sgd_rates_follow_the_frequency_estimate(kind):
    optimizer = tf_freqsgd.CounterSGD(LR)
    layer = trained(kind, optimizer)
    ids, rates, counts = learning_rates(optimizer, layer)
    order = np.argsort(ids)
    seen = np.flatnonzero(occurrences())  # row 4 never appears: no counter, no rate
    np.testing.assert_array_equal(ids[order], seen)
    np.testing.assert_allclose(counts[order], occurrences()[seen])
    np.testing.assert_allclose(rates[order], LR * (occurrences()[seen] / 3) ** -0.5, rtol=1e-6)
    keys, values = counter_values(optimizer, layer)
    np.testing.assert_allclose(values[np.argsort(keys)], occurrences()[seen])


def test_rowwise_adagrad_counter_rates_divide_by_the_accumulator():
    optimizer = tf_freqsgd.RowwiseAdagradCounter(LR, initial_accumulator_value=0.1)
    layer = trained("table", optimizer)
    ids, rates, counts = learning_rates(optimizer, layer)
    # Every gradient entry of a row is its occurrences in the step (loss = sum of rows).
    squares = sum(np.bincount(batch, minlength=ROWS) ** 2.0 for batch in BATCHES)
    accumulator = 0.1 + squares[ids]
    expected = LR * (counts / 3) ** -0.5 / (np.sqrt(accumulator) + optimizer.epsilon)
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_frequency_sgd_rates_use_the_given_frequencies():
    given = np.array([0.5, 1.0, 2.0, 4.0, 0.25, 1.5])
    layer = make_embedding("table", ROWS, 3, name="rows")
    layer(tf.constant([0]))
    optimizer = tf_freqsgd.FrequencySGD({layer.embeddings.name: given}, LR)
    optimizer.build(layer.trainable_variables)
    ids, rates, counts = learning_rates(optimizer, layer)
    np.testing.assert_array_equal(ids, np.arange(ROWS))
    np.testing.assert_allclose(rates, LR * given ** -0.5, rtol=1e-6)
    assert counts is None


def test_legacy_optimizers_rates():
    sgd = tf.keras.optimizers.legacy.SGD(LR)
    _, rates, counts = learning_rates(sgd, trained("table", sgd))
    np.testing.assert_allclose(rates, np.full(ROWS, LR))
    assert counts is None

    adagrad = tf.keras.optimizers.legacy.Adagrad(LR, initial_accumulator_value=0.1, epsilon=1e-7)
    _, rates, _ = learning_rates(adagrad, trained("table", adagrad))
    squares = sum(np.bincount(batch, minlength=ROWS) ** 2.0 for batch in BATCHES)
    np.testing.assert_allclose(rates, LR / (np.sqrt(0.1 + squares) + 1e-7), rtol=1e-6)

    adam = tf.keras.optimizers.legacy.Adam(LR)
    layer = trained("dynamic", adam)
    ids, rates, _ = learning_rates(adam, layer)
    np.testing.assert_array_equal(np.sort(ids), np.flatnonzero(occurrences()))  # the table's keys
    # TFRA updates the second moments of the batch's rows only: v <- b2 v + (1 - b2) g^2 when
    # the row appears (g: its occurrences in the step).
    v = np.zeros(ROWS)
    for batch in BATCHES:
        present = np.bincount(batch, minlength=ROWS) > 0
        v[present] = 0.999 * v[present] + 0.001 * np.bincount(batch, minlength=ROWS)[present] ** 2.0
    lr_t = LR * math.sqrt(1 - 0.999 ** 3) / (1 - 0.9 ** 3)
    np.testing.assert_allclose(rates, lr_t / (np.sqrt(v[ids]) + 1e-7), rtol=1e-5)
