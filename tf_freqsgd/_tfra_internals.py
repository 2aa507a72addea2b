"""The TFRA (tensorflow-recommenders-addons) internals tf_freqsgd needs, in one place.

Imported only where a TFRA variable is met, so TFRA itself is already loaded. TFRA records the
slot tables of a ``TrainableWrapper`` in a private attribute with no public reader; a TFRA outside
``TESTED`` gets one warning at import.
"""

import warnings

import tensorflow_recommenders_addons as tfra

TESTED = ((0, 8), (0, 8))  # first and last minor versions CI runs

_version = tuple(int(part) for part in tfra.__version__.split(".")[:2])
if not TESTED[0] <= _version <= TESTED[1]:
    warnings.warn(f"tf_freqsgd is tested with TFRA {TESTED[0][0]}.{TESTED[0][1]}; this is {tfra.__version__}, whose "
                  "internals tf_freqsgd uses may differ.", RuntimeWarning, stacklevel=2)


def slot_tables(trainable):
    """The slot tables (momentum, accumulators, ...) TFRA's optimizers made for ``trainable``, a
    ``TrainableWrapper`` of a dynamic embedding."""
    return list(trainable._optimizer_vars.value)
