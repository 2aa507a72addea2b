"""Import-time settings: the Python version, the legacy-Keras switch and AutoGraph's rules.

tf_freqsgd's optimizers subclass ``tf_keras`` (legacy Keras 2). TensorFlow 2.16 resolves
``tf.keras`` lazily, on first use, from the ``TF_USE_LEGACY_KERAS`` environment variable, so the
variable still takes effect when TensorFlow is imported but ``tf.keras`` has not been touched yet.
"""

import os
import sys

SUPPORTED_PYTHON = (3, 11)

KERAS3_FIX = (
    "tf_freqsgd needs legacy Keras (the tf_keras package) as tf.keras, but tf.keras is already "
    "Keras 3 in this process. Fix: set TF_USE_LEGACY_KERAS=1 in the environment before "
    "TensorFlow is imported (e.g. `export TF_USE_LEGACY_KERAS=1`), or import tf_freqsgd before "
    "anything touches tf.keras."
)


def check_python_version(version_info=sys.version_info):
    if tuple(version_info[:2]) != SUPPORTED_PYTHON:
        raise ImportError(
            "tf_freqsgd supports Python 3.11 only (its pinned stack, TensorFlow Recommenders-Addons "
            f"0.8.1, ships a cp311 wheel alone); this is Python {version_info[0]}.{version_info[1]}. "
            "Create the environment with `make install` on a machine with python3.11."
        )


def _keras_loader_resolved(tf_module):
    loader = tf_module.__dict__.get("keras")
    # An unresolved KerasLazyLoader keeps this flag in its own __dict__; reading it does not
    # trigger the import.
    return bool(getattr(loader, "__dict__", {}).get("_tfll_initialized", True))


def select_legacy_keras():
    """Makes tf.keras resolve to tf_keras, or raises ImportError naming the fix."""
    tf_module = sys.modules.get("tensorflow")
    if tf_module is None or not _keras_loader_resolved(tf_module):
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        if tf_module is None:
            return
    import tensorflow as tf

    if not tf.keras.__name__.startswith("tf_keras"):
        raise ImportError(KERAS3_FIX)


AUTOGRAPH_ENV = "TF_FREQSGD_CONVERT_TF_KERAS"
# The module of tf_keras's train/test/predict functions, which call the model's train_step,
# test_step and predict_step: user overrides there may branch on tensors.
TRAINING_ENGINE_MODULE = "tf_keras.src.engine.training"


def exclude_tf_keras_from_autograph(environ=os.environ):
    """Stops AutoGraph from converting tf_keras's internals, except its training engine.

    ``tf.function`` rewrites, source to source, every Python function it reaches that no rule of
    ``tensorflow.python.autograph.core.config.CONVERSION_RULES`` excludes. TensorFlow excludes
    ``tensorflow`` and ``keras`` but not ``tf_keras``, so the first ``fit`` of every process
    converted tf_keras's whole training path (loss and metric containers, the optimizers' apply
    path): 13-19 s here, against about 1 s without. tf_keras's own code does not need converting.

    Two rules go first: ``Convert`` for ``tf_keras.src.engine.training`` (so the model's
    ``train_step`` / ``test_step`` / ``predict_step``, user overrides included, are converted as
    before) and ``DoNotConvert`` for the rest of ``tf_keras``. Layers' ``call``, losses and metrics
    are converted as before too: tf_keras converts them explicitly. ``steps_per_execution > 1``
    loops sit in the converted engine. Code reached only through other tf_keras modules, such as an
    optimizer's update, runs as plain Python building a graph (control flow must use ``tf.cond``).

    Opt out with ``TF_FREQSGD_CONVERT_TF_KERAS=1`` in the environment before importing tf_freqsgd;
    ``0`` or unset applies the rules. Applying them twice adds nothing.
    """
    choice = environ.get(AUTOGRAPH_ENV, "0").strip() or "0"
    if choice not in ("0", "1"):
        raise ValueError(f"{AUTOGRAPH_ENV} must be 0 (exclude tf_keras from AutoGraph, the default) or 1 "
                         f"(let AutoGraph convert tf_keras); got {choice!r}.")
    if choice == "1":
        return
    from tensorflow.python.autograph.core import config

    rules = (config.Convert(TRAINING_ENGINE_MODULE), config.DoNotConvert("tf_keras"))
    present = {str(rule) for rule in config.CONVERSION_RULES}
    if not all(str(rule) in present for rule in rules):
        config.CONVERSION_RULES = rules + tuple(config.CONVERSION_RULES)
