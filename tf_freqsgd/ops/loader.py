"""Loads the fused-op library lazily, once; falls back to the pure-TF path with one warning.

``TF_FREQSGD_OPS`` chooses the path: ``auto`` (default: the custom op when it loads, else pure
TF), ``custom`` (the custom op, or an error saying why it cannot load) or ``tf`` (pure TF always).
The library is built by ``setup.py`` (``make install``) against the installed TensorFlow, whose
version its file name carries: a library built for another TensorFlow is not loaded.
``TF_FREQSGD_OPS_LIBRARY`` names a library to load instead (a Bazel build, say: ``make bazel-op``).
"""

import functools
import glob
import os
import warnings

import tensorflow as tf

from tf_freqsgd import _tf_internals

PATH_ENV = "TF_FREQSGD_OPS"
LIBRARY_ENV = "TF_FREQSGD_OPS_LIBRARY"
_CHOICES = ("auto", "custom", "tf")
_HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY_STEM = "_freqsgd_ops"


def _library_tag(version):
    return f"{LIBRARY_STEM}_tf{version.replace('.', '_')}"


def library_path():
    """The library named by TF_FREQSGD_OPS_LIBRARY, else the one built for this TensorFlow beside
    this file, or None."""
    if os.environ.get(LIBRARY_ENV):
        return os.environ[LIBRARY_ENV]
    found = sorted(glob.glob(os.path.join(_HERE, f"{_library_tag(tf.__version__)}.*so")))
    return found[0] if found else None


def _choice():
    choice = os.environ.get(PATH_ENV, "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"{PATH_ENV} must be one of {_CHOICES}; got {choice!r}.")
    return choice


@functools.lru_cache(maxsize=None)
def _load():
    """(module, None) or (None, why it cannot load)."""
    path = library_path()
    if path is not None and not os.path.exists(path):
        return None, f"{LIBRARY_ENV}={path} does not exist"
    if path is None:
        others = sorted(os.path.basename(p) for p in glob.glob(os.path.join(_HERE, f"{LIBRARY_STEM}_tf*.so")))
        built = f"only {', '.join(others)} (built for another TensorFlow)" if others else "no library"
        return None, (f"{built} in {_HERE} for TensorFlow {tf.__version__}: "
                      "build it against the installed TensorFlow: `pip install --no-build-isolation .` in the "
                      "source tree (an isolated build cannot see TensorFlow), or `make install`")
    try:
        return tf.load_op_library(path), None
    except (tf.errors.NotFoundError, OSError) as error:
        return None, f"{path} does not load: {error}"


@functools.lru_cache(maxsize=None)
def _warn_once(reason):
    warnings.warn(f"tf_freqsgd: using the pure-TensorFlow path; the fused op is unavailable ({reason}).",
                  RuntimeWarning, stacklevel=3)


def fused_ops():
    """The loaded op module, or None when the pure-TF path is to be used."""
    choice = _choice()
    if choice == "tf":
        return None
    module, reason = _load()
    if module is None:
        if choice == "custom":
            raise RuntimeError(f"{PATH_ENV}=custom, but the fused op cannot load: {reason}.")
        _warn_once(reason)
    return module


def custom_op_available():
    """True when the fused op is built for this TensorFlow and loads."""
    return _load()[0] is not None


def gpu_kernels_available():
    """True when the loaded library holds the CUDA kernels (setup.py built it with nvcc)."""
    if not custom_op_available():
        return False
    return "GPU" in _tf_internals.registered_kernel_devices("ResourceSparseApplyCounterSGD")
