"""Which Keras: tf_freqsgd follows tf.keras (TensorFlow decides from TF_USE_LEGACY_KERAS), never
sets it, names it in active_keras(), and exports that Keras' optimizers."""

import os
import subprocess
import sys

import pytest

import tf_freqsgd
from tf_freqsgd import _compat


def run_python(code, legacy=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if legacy is not None:
        env["TF_USE_LEGACY_KERAS"] = legacy
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


PROBE = ("import os, tf_freqsgd, tensorflow as tf; print(os.environ.get('TF_USE_LEGACY_KERAS'), tf_freqsgd.active_keras(), "
         "tf.keras.__name__.split('.')[0], type(tf_freqsgd.CounterSGD()).__module__.split('.')[2], "
         "isinstance(tf_freqsgd.CounterSGD(), tf.keras.optimizers.Optimizer))")


@pytest.mark.parametrize("legacy,expected", [
    ("1", ["1", "tf_keras", "tf_keras", "keras2", "True"]),
    ("true", ["true", "tf_keras", "tf_keras", "keras2", "True"]),
    (None, ["None", "keras3", "keras", "keras3", "True"]),
    ("0", ["0", "keras3", "keras", "keras3", "True"]),
])
def test_the_optimizers_are_those_of_the_keras_tf_keras_is(legacy, expected):
    result = run_python(PROBE, legacy)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == expected  # the switch is left as it was


def test_a_resolved_tf_keras_decides_whatever_the_environment_says_later():
    result = run_python("import os, tensorflow as tf; tf.keras.layers; os.environ['TF_USE_LEGACY_KERAS'] = '1';"
                        "import tf_freqsgd; print(tf_freqsgd.active_keras())")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "keras3"


def test_active_keras_in_this_process():
    assert tf_freqsgd.active_keras() == _compat.active_keras() in (_compat.TF_KERAS, _compat.KERAS3)
