"""Dense gradients: plain SGD (momentum, Nesterov) or row-wise Adagrad, no frequency scale."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from optimizer_cases import make_pair


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_counter_sgd_dense_equals_keras_sgd(momentum, nesterov):
    init = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    ours, theirs = tf.Variable(init), tf.Variable(init)
    optimizer = tf_freqsgd.CounterSGD(0.05, momentum=momentum, nesterov=nesterov)
    keras_sgd = tf.keras.optimizers.SGD(0.05, momentum=momentum, nesterov=nesterov)
    for seed in range(4):
        gradient = tf.constant(np.random.default_rng(seed).normal(size=(4, 3)).astype(np.float32))
        optimizer.apply_gradients([(gradient, ours)])
        keras_sgd.apply_gradients([(gradient, theirs)])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "class_name,options",
    [
        ("CounterSGD", {"weight_decay": 0.1}),
        ("CounterSGD", {"momentum": 0.5, "weight_decay": 0.1, "weight_decay_mode": "l2"}),
        ("RowwiseAdagradCounter", {}),
        ("RowwiseAdagradCounter", {"weight_decay": 0.1, "weight_decay_mode": "l2"}),
    ],
)
@pytest.mark.parametrize("shape", [(5, 3), (5,), (5, 2, 2)])
def test_dense_rules_match_reference(class_name, options, shape):
    optimizer, reference = make_pair(class_name, shape=shape, learning_rate=0.2, **options)
    init = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    variable = tf.Variable(init)
    expected = init
    for seed in range(3):
        gradient = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
        expected = reference.dense_step(expected, gradient)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-5, atol=2e-6)


def test_scalar_variable_trains():
    variable = tf.Variable(1.0)
    optimizer = tf_freqsgd.RowwiseAdagradCounter(0.1, initial_accumulator_value=0.0)
    optimizer.apply_gradients([(tf.constant(2.0), variable)])
    np.testing.assert_allclose(variable.numpy(), 1.0 - 0.1 * 2.0 / (2.0 + 1e-7), rtol=1e-6)
