"""AutoGraph rules set at import: tf_keras's internals are not converted, its training engine and
user code are."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tf_freqsgd
import tensorflow as tf
from tensorflow.python.autograph.core import config
from tensorflow.python.autograph.impl import conversion

from tf_freqsgd import _compat


def rule_names():
    return [str(rule) for rule in config.CONVERSION_RULES]


def test_import_excludes_tf_keras_but_converts_its_training_engine():
    import tf_keras
    from tf_keras.src.engine import training

    assert rule_names()[:2] == [f"Convert rule for {_compat.TRAINING_ENGINE_MODULE}", "DoNotConvert rule for tf_keras"]
    assert conversion.is_allowlisted(tf_keras.optimizers.legacy.SGD.apply_gradients)
    assert not conversion.is_allowlisted(training.Model.train_step)


def test_applying_twice_adds_nothing():
    before = rule_names()
    _compat.exclude_tf_keras_from_autograph(environ={})
    assert rule_names() == before


def test_opt_out_by_environment_leaves_tensorflows_rules():
    env = dict(os.environ, **{_compat.AUTOGRAPH_ENV: "1"})
    code = ("import tf_freqsgd; from tensorflow.python.autograph.core import config;"
            "print(any('tf_keras' in str(rule) for rule in config.CONVERSION_RULES))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"


@pytest.mark.parametrize("value", ["yes", "2", "true"])
def test_bad_environment_value_names_the_variable(value):
    with pytest.raises(ValueError, match=rf"{_compat.AUTOGRAPH_ENV} must be 0 .* or 1 .*got '{value}'"):
        _compat.exclude_tf_keras_from_autograph(environ={_compat.AUTOGRAPH_ENV: value})


class DoublesPositiveInputs(tf.keras.layers.Layer):
    def call(self, inputs):
        if tf.reduce_sum(inputs) > 0:  # Python control flow on a tensor: needs AutoGraph
            return 2.0 * inputs
        return inputs


class SkipsAllZeroLabels(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.branch = DoublesPositiveInputs()
        self.dense = tf.keras.layers.Dense(1)

    def call(self, inputs):
        return self.dense(self.branch(inputs))

    def train_step(self, data):
        _, labels = data
        if tf.reduce_sum(labels) > 0:
            return super().train_step(data)
        return {"loss": tf.constant(0.0)}


def loss_halved_when_large(labels, predictions):
    loss = tf.reduce_mean(tf.square(labels - predictions))
    if loss > 100.0:
        loss = 0.5 * loss
    return loss


@pytest.mark.parametrize("steps_per_execution", [1, 2])
def test_user_code_branching_on_tensors_still_trains(steps_per_execution):
    model = SkipsAllZeroLabels()
    model.compile(tf_freqsgd.CounterSGD(0.1), loss_halved_when_large, steps_per_execution=steps_per_execution)
    rng = np.random.default_rng(0)
    features, labels = rng.random((32, 3), np.float32), rng.random((32, 1), np.float32)
    history = model.fit(features, labels, batch_size=8, epochs=2, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    assert model.evaluate(features, labels, verbose=0) < history.history["loss"][0]
