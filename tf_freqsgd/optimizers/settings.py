"""The settings that decide what an optimizer's saved state means, saved beside that state so that a
restore into an optimizer of other settings fails before anything is written.

A checkpoint of ``CounterSGD(counter_halflife=3)`` holds float64 decayed counts and last-seen
steps; restored into ``CounterSGD()`` (int32 counts), into ``RowwiseAdagradCounter`` or into an
optimizer without momentum, TensorFlow matched variables by position and failed half-way, or
silently dropped slots. ``StateSettings`` is a ``tf.train.experimental.PythonState``, and TF
restores Python state before any variable of the same restore: a mismatch raises ``ValueError``
naming each setting that differs. The ``.keras`` / ``.weights.h5`` path checks the same record.
"""

import json

import numpy as np
import tensorflow as tf

from tf_freqsgd.optimizers.state import numpy_dtype

# The layout of the saved state: 2 since the counters became int32 codes / float64 with int64 steps.
STATE_FORMAT = 2
H5_KEY = "tf_freqsgd_settings"


def _shown(value):
    return "absent" if value is None else repr(value)


def check_restorable(saved, current, source):
    """Raises ``ValueError`` when the ``saved`` settings differ from ``current`` ones."""
    differences = [f"{key} is {_shown(saved.get(key))} in the {source} and {_shown(current.get(key))} here"
                   for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
    if differences:
        raise ValueError(
            f"Cannot restore this {source} into {current.get('class')}: its state was written with other "
            f"settings ({'; '.join(differences)}). Nothing was restored. Restore into an optimizer made with the "
            f"{source}'s settings (its config: tf.keras.optimizers.serialize), then change the rate or schedule.")


def encode(settings):
    return json.dumps(settings, sort_keys=True)


def decode(text):
    return json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)


SETTINGS_ATTRIBUTE = "_state_settings"


def without_settings(children, save_type):
    """An optimizer's checkpoint children, without the settings in a SavedModel."""
    if save_type == "savedmodel" and SETTINGS_ATTRIBUTE in children:
        children = {name: child for name, child in children.items() if name != SETTINGS_ATTRIBUTE}
    return children


class StateSettings(tf.train.experimental.PythonState):
    """Checkpointed settings of one optimizer; ``describe()`` returns the current ones."""

    def __init__(self, describe):
        self._describe = describe

    def serialize(self):
        return encode(self._describe())

    def deserialize(self, string_value):
        check_restorable(decode(string_value), self._describe(), "checkpoint")


def save_with_variables(optimizer, store):
    """Adds ``optimizer``'s settings to a ``.keras`` / ``.weights.h5`` store of its variables."""
    # As bytes: Keras 3's stores take numeric arrays only.
    store[H5_KEY] = np.frombuffer(encode(optimizer.state_settings()).encode("utf-8"), np.uint8)


def load_own_variables(optimizer, store, built):
    """The ``.keras`` / ``.weights.h5`` restore of ``optimizer``'s variables: settings checked and
    every value's shape and dtype matched before the first assignment."""
    keys = set(store.keys())
    if H5_KEY in keys:
        check_restorable(decode(np.asarray(store[H5_KEY][()], np.uint8).tobytes()), optimizer.state_settings(), "file")
        keys.remove(H5_KEY)
    variables = list(optimizer.variables)
    if len(keys) != len(variables):
        unbuilt = "" if built else " (it is not built yet: build it first)"
        raise ValueError(f"Cannot restore {optimizer.name}: the file holds {len(keys)} optimizer variables, this "
                         f"optimizer has {len(variables)}{unbuilt}. Nothing was restored.")
    values = [np.asarray(store[str(i)][()]) for i in range(len(variables))]
    for variable, value in zip(variables, values):
        if tuple(value.shape) != tuple(variable.shape) or value.dtype != numpy_dtype(variable):
            raise ValueError(f"Cannot restore {optimizer.name}: {variable.name} is {numpy_dtype(variable)}"
                             f"{tuple(variable.shape)} here and {value.dtype}{value.shape} in the file. Nothing was "
                             "restored.")
    for variable, value in zip(variables, values):
        variable.assign(value)

