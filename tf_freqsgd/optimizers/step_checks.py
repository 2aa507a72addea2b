"""The checks of one optimizer step, made before any variable is written.

A step is all-or-nothing: every gradient of the step is checked, for every variable together,
before the first write. Two kinds of check:

* **Structure** (dtype, id dtype, rank and row width): known when the step is traced, so a bad
  gradient raises ``TypeError`` / ``ValueError`` at once, naming the variable, before any op runs.
  Widths unknown until run time (TFRA's shadow copies) are asserted like the values.
* **Values** (finite numbers, ids inside the table): run-time assertions that the update ops wait
  on. A non-finite value either raises ``InvalidArgumentError`` naming the variable
  (``non_finite="raise"``) or makes the optimizer skip the whole step (``"skip"``). Ids out of
  range always raise.

The finite check is ``is_finite(sum(values * zero))``: ``0 * x`` is 0 for every finite ``x`` and
NaN for inf or NaN, and the sum of zeros cannot overflow; one multi-threaded pass, with no
boolean tensor as ``reduce_all(is_finite(values))`` makes. ``zero`` must not be a
constant: Grappler's constant folding rewrites ``x * 0`` to ``0`` whenever ``x``'s shape is static,
which removed the check from every ``model.fit``. It is computed from the optimizer's step counter,
which Grappler cannot evaluate.

XLA (``jit_compile=True`` on the model) drops assertions: there, any failed value check skips the
step instead of raising (see ``FrequencyAwareOptimizer``).
"""

import tensorflow as tf

from tf_freqsgd.optimizers import row_storage as dynamic

INDEX_DTYPES = (tf.int32, tf.int64)
NON_FINITE_POLICIES = ("raise", "skip")


def num_rows(variable):
    """The row count without reading the table: a read before a scatter makes TF copy the table."""
    shape = tf.TensorShape(variable.shape)
    if shape.rank and shape[0] is not None:
        return shape[0]
    return tf.raw_ops.VariableShape(input=variable.handle)[0]


def describe(variable):
    if dynamic.is_dynamic(variable):
        return f"dynamic table '{variable.params.name}'"
    return f"variable '{variable.name}'"


def _row_shape(variable):
    """The static shape of one row of ``variable`` (of a dynamic table: its width)."""
    if dynamic.is_dynamic(variable):
        return tf.TensorShape([variable.params.dim])
    return variable.shape[1:]


class GradientCheck:
    """The checks of one gradient against its variable; structure errors raise on construction."""

    def __init__(self, where, gradient, variable):
        self.where = where
        self.variable = variable
        sparse = isinstance(gradient, tf.IndexedSlices)
        self.values = gradient.values if sparse else gradient
        self.ids = gradient.indices if sparse and not dynamic.is_dynamic(variable) else None
        if self.values.dtype.base_dtype != variable.dtype.base_dtype:
            raise TypeError(f"{where} has dtype {self.values.dtype.name}; expected {variable.dtype.name}.")
        if sparse:
            if gradient.indices.dtype not in INDEX_DTYPES:
                raise TypeError(f"{where} has ids of dtype {gradient.indices.dtype.name}; expected int32 or int64.")
            self._check_rows(tf.TensorShape([None]).concatenate(_row_shape(variable)))
        elif dynamic.is_dynamic(variable):
            self._check_rows(tf.TensorShape([None, variable.params.dim]), flatten=True)
        else:
            self._check_rows(variable.shape)

    def _check_rows(self, expected, flatten=False):
        """A static mismatch raises now; dimensions the trace cannot see are asserted at run time."""
        actual = self.values.shape
        if flatten and actual.rank:
            # TFRA hands dense gradients of its shadow copies in any shape of whole rows.
            actual = tf.TensorShape([None, actual[-1]])
        if actual.rank is not None and not actual.is_compatible_with(expected):
            raise ValueError(f"{self.where} has shape {actual}; expected {expected} (one row per id, rows "
                             "as wide as the variable's).")
        # (axis counted from the end, expected size)
        self.unknown_dims = [(axis - expected.rank, size) for axis, size in enumerate(expected)
                             if size is not None and (actual.rank is None or actual[axis] is None)]

    def conditions(self, zero):
        """``(required, finite)``: run-time checks as ``(condition, message)`` pairs; ``required``
        must hold (shapes, ids), ``finite`` is the non-finite policy's."""
        required = []
        shape = tf.shape(self.values, out_type=tf.int64) if self.unknown_dims else None
        for axis, size in self.unknown_dims:
            required.append((tf.equal(shape[axis], size),
                             [f"{self.where} has the wrong shape: expected {size} in dimension {axis}; shape:", shape]))
        if self.ids is not None:
            ids = self.ids
            smallest, largest = tf.reduce_min(ids), tf.reduce_max(ids)
            rows = tf.cast(num_rows(self.variable), ids.dtype)
            required.append((
                tf.logical_or(tf.size(ids) == 0, tf.logical_and(smallest >= 0, largest < rows)),
                [f"{self.where} has an id outside [0, {self.variable.shape[0]}); smallest and largest id:",
                 smallest, largest]))
        finite = tf.math.is_finite(tf.reduce_sum(self.values * tf.cast(zero, self.values.dtype)))
        return required, (finite, [f"{self.where} has a non-finite value."])


def step_conditions(optimizer_name, grads_and_vars, zero, local_results=lambda value: (value,)):
    """``(required, finite)`` of a whole step, as ``GradientCheck.conditions``; structure errors raise here.

    ``zero``: a 0 that Grappler cannot fold (see the module's docstring). ``local_results`` lists a
    value's per-replica components under a distribution strategy.
    """
    required, finite = [], []
    for gradient, variable in grads_and_vars:
        if gradient is None:
            continue
        where = f"{optimizer_name}: gradient for {describe(variable)}"
        for component in local_results(gradient):
            check_required, check_finite = GradientCheck(where, component, variable).conditions(zero)
            required.extend(check_required)
            finite.append(check_finite)
    return required, finite


def assertions(conditions):
    return [tf.debugging.Assert(condition, message) for condition, message in conditions]


def all_hold(conditions):
    return tf.reduce_all(tf.stack([condition for condition, _ in conditions])) if conditions else tf.constant(True)
