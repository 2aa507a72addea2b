"""Optimizer-state size, measured from the optimizer's own variables."""

import numpy as np
import tensorflow as tf


def numpy_dtype(variable):
    """A variable's dtype as NumPy's: from a ``tf.DType`` or a Keras 3 dtype name."""
    dtype = variable.dtype
    return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))


def optimizer_state_bytes(optimizer, rows=None):
    """Bytes held by ``optimizer``'s variables (tf_keras, its legacy optimizers, and Keras 3 alike).

    With ``rows``, counts only variables whose first dimension is ``rows``: the state kept for a
    table of that many rows, without the step counter and other shared scalars.
    """
    variables = optimizer.variables
    variables = variables() if callable(variables) else variables
    shapes = [(tf.TensorShape(v.shape), v) for v in variables]
    if rows is not None:
        shapes = [(shape, v) for shape, v in shapes if shape.rank and shape[0] == rows]
    return int(sum(shape.num_elements() * numpy_dtype(v).itemsize for shape, v in shapes))
