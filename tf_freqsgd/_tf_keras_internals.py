"""The tf_keras (Keras 2) internals tf_freqsgd needs, in one place, for the versions it is tested with.

The legacy optimizers keep their decayed rate, hyperparameters and slot creation behind private
methods with no public equivalent; a tf_keras outside ``TESTED`` gets one warning at import.
"""

import warnings

import tensorflow as tf
import tf_keras

TESTED = ((2, 16), (2, 21))  # first and last minor versions CI runs

_version = tuple(int(part) for part in tf_keras.__version__.split(".")[:2])
if not TESTED[0] <= _version <= TESTED[1]:
    warnings.warn(f"tf_freqsgd is tested with tf_keras {TESTED[0][0]}.{TESTED[0][1]} to {TESTED[1][0]}.{TESTED[1][1]}; "
                  f"this is {tf_keras.__version__}, whose internals tf_freqsgd uses may differ.", RuntimeWarning,
                  stacklevel=2)


def decayed_learning_rate(optimizer):
    """A legacy optimizer's rate at its current iteration, schedules applied."""
    return optimizer._decayed_lr(tf.float32)


def hyperparameter(optimizer, name):
    """A legacy optimizer's hyperparameter ``name`` (``beta_1``, ...), as a value."""
    return optimizer._get_hyper(name)


def create_slots(optimizer, variables):
    """What a legacy optimizer's first ``apply_gradients`` does before stepping: its slots for
    ``variables``, under its own name scope (so that checkpoints name them alike)."""
    with tf.name_scope(optimizer._name):
        optimizer._create_all_weights(variables)
