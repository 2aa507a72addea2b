"""Which Keras this process uses, and AutoGraph's rules for tf_keras.

TensorFlow resolves ``tf.keras`` lazily, on first use: to tf_keras (Keras 2) when the environment
has ``TF_USE_LEGACY_KERAS`` set to ``1``/``true``/``True``, else to Keras 3. tf_freqsgd follows
that choice and never makes it: ``active_keras()`` names it, and the optimizers, layers and
exports of that Keras are the ones ``tf_freqsgd`` exports.
"""

import os
import sys

TF_KERAS = "tf_keras"
KERAS3 = "keras3"
LEGACY_SWITCH = "TF_USE_LEGACY_KERAS"


def _keras_loader_resolved(tf_module):
    loader = tf_module.__dict__.get("keras")
    # An unresolved KerasLazyLoader keeps this flag in its own __dict__; reading it does not
    # trigger the import.
    return bool(getattr(loader, "__dict__", {}).get("_tfll_initialized", True))


def active_keras():
    """``"tf_keras"`` or ``"keras3"``: the Keras that ``tf.keras`` is in this process, or will be
    when TensorFlow resolves it (from ``TF_USE_LEGACY_KERAS``, as TensorFlow decides)."""
    tf_module = sys.modules.get("tensorflow")
    if tf_module is not None and _keras_loader_resolved(tf_module):
        # By its Model class: TFRA re-binds tf.keras under another module name.
        return TF_KERAS if tf_module.keras.Model.__module__.startswith("tf_keras") else KERAS3
    return TF_KERAS if os.environ.get(LEGACY_SWITCH) in ("true", "True", "1") else KERAS3


def other_keras_fix(front):
    """How to give a model of the other Keras an optimizer of this ``front``'s Keras."""
    if front == TF_KERAS:
        return ("this optimizer is tf_freqsgd's tf_keras (Keras 2) one; a Keras 3 model needs "
                "tf_freqsgd.optimizers.keras3's, or TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported "
                "so that tf.keras is tf_keras")
    return ("this optimizer is tf_freqsgd's Keras 3 one; a tf_keras (Keras 2) model needs "
            "tf_freqsgd.optimizers.keras2's (with TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported, "
            "tf_freqsgd exports those)")


def is_graph_model(model):
    """A Functional or Sequential model (a layer graph ``clone_model`` can rewrite), of either Keras."""
    if hasattr(model, "_is_graph_network"):  # tf_keras: what its clone_model tests
        return bool(model._is_graph_network)
    return type(model).__name__ in ("Functional", "Sequential")  # Keras 3


def input_names(model):
    """The names of a model's inputs, in ``model.inputs`` order, in either Keras."""
    names = getattr(model, "input_names", None)
    return list(names) if names else [tensor.name.split(":")[0] for tensor in model.inputs]


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
