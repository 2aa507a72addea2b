"""tests/keras3 runs where tf.keras is Keras 3 (`make test` runs it with TF_USE_LEGACY_KERAS=0, on the
TensorFlow backend and on JAX); under tf_keras it is skipped."""

import pytest

import tf_freqsgd


def pytest_collection_modifyitems(config, items):
    if tf_freqsgd.active_keras() == "keras3":
        return
    skip = pytest.mark.skip(reason="Keras 3 front: run with TF_USE_LEGACY_KERAS=0 (make test does)")
    for item in items:
        if "tests/keras3/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)
