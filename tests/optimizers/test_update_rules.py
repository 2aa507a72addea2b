"""Every update rule against the NumPy reference, on raw sparse gradients with repeated ids."""

import numpy as np
import pytest
import tensorflow as tf

from optimizer_cases import (COUNTER_OPTIONS, FREQUENCY_OPTIONS, ROWS, SGD_ONLY_OPTIONS, initial_weights, make_pair,
                             random_batches, sparse_gradient)


def run_both(optimizer, reference, mode, id_dtype=np.int64, steps=6):
    variable = tf.Variable(initial_weights(), name="table")
    expected = variable.numpy()

    def apply(gradient):
        optimizer.apply_gradients([(gradient, variable)])

    if mode == "function":
        apply = tf.function(apply, reduce_retracing=True)
    for ids, values in random_batches(steps=steps, id_dtype=id_dtype):
        apply(sparse_gradient(ids, values))
        expected = reference.sparse_step(expected, ids, values)
    return variable.numpy(), expected, variable


def cases(class_name, options):
    return [pytest.param(class_name, value, id=f"{class_name}-{key}") for key, value in options.items()]


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize(
    "class_name,options",
    cases("CounterSGD", {**COUNTER_OPTIONS, **SGD_ONLY_OPTIONS})
    + cases("RowwiseAdagradCounter", COUNTER_OPTIONS),
)
def test_counter_rules_match_reference(class_name, options, mode):
    optimizer, reference = make_pair(class_name, learning_rate=0.1, **options)
    actual, expected, variable = run_both(optimizer, reference, mode)
    np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(optimizer.counts(variable).numpy(), reference.current_counts(),
                               rtol=1e-5)


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("name,options", FREQUENCY_OPTIONS.items(), ids=list(FREQUENCY_OPTIONS))
def test_frequency_sgd_matches_reference(name, options, mode):
    table = np.random.default_rng(3).uniform(0.05, 3.0, size=ROWS)
    optimizer, reference = make_pair("FrequencySGD", learning_rate=0.1, frequencies={"table": table}, **options)
    actual, expected, variable = run_both(optimizer, reference, mode)
    np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_int32_and_int64_ids(id_dtype):
    optimizer, reference = make_pair("CounterSGD", learning_rate=0.1, counter_halflife=3.0)
    actual, expected, variable = run_both(optimizer, reference, "function", id_dtype=id_dtype)
    np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=2e-6)


def test_learning_rate_schedule_follows_reference():
    schedule = tf.keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=1, decay_rate=0.7)
    optimizer, reference = make_pair("CounterSGD", learning_rate=schedule, weight_decay=0.1)
    reference.learning_rate = lambda step: 0.5 * 0.7**step
    actual, expected, variable = run_both(optimizer, reference, "function")
    np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=2e-6)


def test_rows_outside_the_batch_are_untouched():
    optimizer, _ = make_pair("CounterSGD", weight_decay=0.1, momentum=0.9)
    variable = tf.Variable(initial_weights(), name="table")
    before = variable.numpy()
    optimizer.apply_gradients([(sparse_gradient(np.array([2, 5, 2]), np.ones((3, 3), np.float32)), variable)])
    untouched = np.setdiff1d(np.arange(ROWS), [2, 5])
    np.testing.assert_array_equal(variable.numpy()[untouched], before[untouched])
    np.testing.assert_array_equal(optimizer.counts(variable).numpy()[untouched], 0)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_precision_tables(dtype):
    optimizer, reference = make_pair("CounterSGD", learning_rate=0.1)
    variable = tf.Variable(tf.cast(initial_weights(), dtype), name="table")
    expected = tf.cast(variable, tf.float32).numpy()
    for ids, values in random_batches(steps=3):
        gradient = tf.IndexedSlices(tf.cast(values, dtype), tf.constant(ids), tf.constant([ROWS, 3]))
        optimizer.apply_gradients([(gradient, variable)])
        expected = reference.sparse_step(expected, ids, tf.cast(tf.cast(values, dtype), tf.float32).numpy())
        expected = tf.cast(tf.cast(expected, dtype), tf.float32).numpy()
    np.testing.assert_allclose(tf.cast(variable, tf.float32).numpy(), expected, rtol=2e-2, atol=2e-2)
    assert optimizer.row_state(variable)["counter"].dtype == tf.int32
