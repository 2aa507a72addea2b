"""The TensorFlow internals tf_freqsgd needs, in one place, for the versions it is tested with.

Each is a private or ``tf.__internal__`` API with no public equivalent; a TensorFlow outside
``TESTED`` gets one warning at import, as these may have moved.
"""

import warnings

import tensorflow as tf
from tensorflow.python.framework import kernels
from tensorflow.python.ops import control_flow_util, variable_scope

TESTED = ((2, 16), (2, 21))  # first and last minor versions CI runs

_version = tuple(int(part) for part in tf.__version__.split(".")[:2])
if not TESTED[0] <= _version <= TESTED[1]:
    warnings.warn(f"tf_freqsgd is tested with TensorFlow {TESTED[0][0]}.{TESTED[0][1]} to {TESTED[1][0]}.{TESTED[1][1]}; "
                  f"this is {tf.__version__}, whose internals tf_freqsgd uses may differ.", RuntimeWarning, stacklevel=2)

maybe_merge_call = tf.__internal__.distribute.interim.maybe_merge_call
ShardedVariable = tf.__internal__.distribute.ShardedVariable


class RestoreRefusal(tf.__internal__.tracking.Trackable):
    """A checkpoint dependency that raises ``error`` when a restore reaches what was saved under
    its name: TensorFlow looks up the saved object's children (``_lookup_dependency``) while it
    matches objects, before it reads any value."""

    def __init__(self, error):
        self._error = error

    def _lookup_dependency(self, name, cached_dependencies=None):
        raise self._error


def in_xla_context():
    """True while a function being traced will be compiled by XLA (which drops assertions)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def registered_kernel_devices(op_name):
    """The device types with a kernel of ``op_name`` registered."""
    return {kernel.device_type for kernel in kernels.get_registered_kernels_for_op(op_name).kernel}


def variable_store_names():
    """The names of the variables in TensorFlow's v1 variable store (where TFRA keeps its tables)."""
    try:
        return set(variable_scope._get_default_variable_store()._vars)
    except AttributeError:
        return set()


def sharded_container(variable):
    """The ``ShardedVariable`` that ``variable`` is a shard of (ParameterServerStrategy with a
    partitioner), or None."""
    container = getattr(variable, "_sharded_container", None)
    return container() if container is not None else None


def track_dependency(owner, trackable, name):
    """Makes ``trackable`` a checkpoint dependency of ``owner`` under ``name`` (a TFRA table an
    optimizer owns but does not hold in an attribute Keras tracks)."""
    owner._track_trackable(trackable, name=name)


def shared_name(variable):
    """``variable``'s name without the ``:0`` suffix and replica/device decorations."""
    return variable._shared_name
