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

Where the fused op's library is loaded and the step runs on the CPU, the values are measured by
one ``GradientChecks`` op for the whole step (a pass over each gradient: finite or not, and the
smallest and largest id); a dozen small TensorFlow ops a gradient cost more (docs/fused-op.md).
Elsewhere (GPU, XLA, no library) TensorFlow ops measure the same: the finite check is
``is_finite(sum(values * zero))``: ``0 * x`` is 0 for every finite ``x`` and NaN for inf or NaN,
and the sum of zeros cannot overflow; one multi-threaded pass, with no boolean tensor as
``reduce_all(is_finite(values))`` makes. ``zero`` must not be a constant: Grappler's constant
folding rewrites ``x * 0`` to ``0`` whenever ``x``'s shape is static, which removed the check from
every ``model.fit``. It is computed from the optimizer's step counter, which Grappler cannot
evaluate.

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

    def conditions(self, finite, id_range):
        """``(required, finite)``: run-time checks as ``(condition, message)`` pairs; ``required``
        must hold (shapes, ids), ``finite`` is the non-finite policy's. ``finite``: whether every
        value is finite; ``id_range``: the smallest and largest id (int64; 0 and -1 when there are
        none), or None without ids."""
        required = []
        shape = tf.shape(self.values, out_type=tf.int64) if self.unknown_dims else None
        for axis, size in self.unknown_dims:
            required.append((tf.equal(shape[axis], size),
                             [f"{self.where} has the wrong shape: expected {size} in dimension {axis}; shape:", shape]))
        if id_range is not None:
            smallest, largest = id_range
            rows = tf.cast(num_rows(self.variable), tf.int64)
            required.append((
                tf.logical_and(smallest >= 0, largest < rows),
                [f"{self.where} has an id outside [0, {self.variable.shape[0]}); smallest and largest id:",
                 smallest, largest]))
        return required, (finite, [f"{self.where} has a non-finite value."])

    def measured_in_tensorflow(self, zero):
        """``(finite, id_range)`` of ``conditions`` from TensorFlow ops (see the module's docstring)."""
        finite = tf.math.is_finite(tf.reduce_sum(self.values * tf.cast(zero, self.values.dtype)))
        if self.ids is None:
            return finite, None
        ids = tf.cast(self.ids, tf.int64)
        empty = tf.equal(tf.size(ids), 0)
        smallest = tf.where(empty, tf.constant(0, tf.int64), tf.reduce_min(ids))
        largest = tf.where(empty, tf.constant(-1, tf.int64), tf.reduce_max(ids))
        return finite, (smallest, largest)


def _measured_by_op(ops, checks):
    """Each check's ``(finite, id_range)`` from one ``GradientChecks`` op."""
    finite, id_range = ops.gradient_checks(values=[check.values for check in checks],
                                           ids=[check.ids for check in checks if check.ids is not None])
    ranges = iter(tf.unstack(id_range, num=sum(check.ids is not None for check in checks)))
    return [(finite[i], tuple(tf.unstack(next(ranges))) if check.ids is not None else None)
            for i, check in enumerate(checks)]


def step_conditions(optimizer_name, grads_and_vars, zero, local_results=lambda value: (value,), ops=None):
    """``(required, finite)`` of a whole step, as ``GradientCheck.conditions``; structure errors raise here.

    ``zero``: a 0 that Grappler cannot fold (see the module's docstring). ``local_results`` lists a
    value's per-replica components under a distribution strategy. ``ops``: the fused op's module,
    whose ``GradientChecks`` then measures the values when no GPU is visible, or None.
    """
    checks = []
    for gradient, variable in grads_and_vars:
        if gradient is None:
            continue
        where = f"{optimizer_name}: gradient for {describe(variable)}"
        checks.extend(GradientCheck(where, component, variable) for component in local_results(gradient))
    if not checks:
        return [], []
    if ops is not None and not tf.config.list_logical_devices("GPU"):
        measured = _measured_by_op(ops, checks)
    else:
        measured = [check.measured_in_tensorflow(zero) for check in checks]
    required, finite = [], []
    for check, (values_finite, id_range) in zip(checks, measured):
        check_required, check_finite = check.conditions(values_finite, id_range)
        required.extend(check_required)
        finite.append(check_finite)
    return required, finite


def assertions(conditions):
    return [tf.debugging.Assert(condition, message) for condition, message in conditions]


def all_hold(conditions):
    return tf.reduce_all(tf.stack([condition for condition, _ in conditions])) if conditions else tf.constant(True)
