"""A TensorFlow step of the frequency-aware optimizers, shared by the tf_keras front and Keras 3 on
TensorFlow: the all-or-nothing checks around the whole step, and one variable's update, fused or in
TensorFlow ops."""

import tensorflow as tf

from tf_freqsgd import _tf_internals
from tf_freqsgd import ops as fused
from tf_freqsgd.optimizers import row_storage, sparse_rows, step_checks
from tf_freqsgd.optimizers.array_ops import TENSORFLOW

_FUSED_DTYPES = (tf.float32, tf.float16, tf.bfloat16)


in_xla_context = _tf_internals.in_xla_context


def fused_ops_for(variable):
    """The fused-op module when it can update ``variable`` here, else None (pure-TF path).

    Not inside XLA (it cannot compile a custom op), and for GPU variables only when the library
    holds the CUDA kernels. (Under ``ParameterServerStrategy`` the gradients arrive summed over
    their ids with the occurrences beside them, which the op does not take: the TensorFlow path
    then, see ``update_variable``.) For a TFRA table's shadow rows, the front decides (see
    ``row_storage.BatchStateVariables``).
    """
    if variable.dtype.base_dtype not in _FUSED_DTYPES:
        return None
    if "GPU" in (variable.device or "").upper() and not fused.gpu_kernels_available():
        return None
    if in_xla_context():
        return None
    return fused.fused_ops()


def checked_step(optimizer, grads_and_vars, local_results, apply, unchanged):
    """Runs ``apply()`` when every check of the step passes, else raises (``non_finite="raise"``) or
    returns ``unchanged()`` (``"skip"``); see ``step_checks``."""
    # A zero Grappler cannot fold (see step_checks).
    zero = tf.cast(optimizer.applied_steps < 0, tf.float32)
    required, finite = step_checks.step_conditions(optimizer.name, grads_and_vars, zero, local_results)
    if in_xla_context():
        # XLA drops assertions: there a step failing any check is skipped.
        asserts, apply_if = [], step_checks.all_hold(required + finite)
    elif optimizer.non_finite == "skip":
        asserts, apply_if = step_checks.assertions(required), step_checks.all_hold(finite)
    else:
        asserts, apply_if = step_checks.assertions(required + finite), None
    with tf.control_dependencies(asserts):
        if apply_if is None:
            return apply()
        return tf.cond(apply_if, apply, unchanged)


def update_variable(optimizer, variable, slots, gradient, lr, occurrences=None):
    """One variable's update (``optimizer``'s ``_update``, ``_observe`` and ``_fused_apply``): a
    sparse gradient with the fused op or in TensorFlow ops, a dense one in TensorFlow ops.
    ``occurrences``: given when ``gradient``'s ids are already unique, the times each occurred in
    the batch, for the counter and CowClip (the TensorFlow path then: the fused op counts the ids
    it is given). Returns the batch's unique ids and their counts on the TensorFlow sparse path,
    else None."""
    if not isinstance(gradient, tf.IndexedSlices):
        optimizer._update(variable).dense(TENSORFLOW, row_storage.VariableRows(variable, slots), gradient, lr)
        return None
    if occurrences is not None:
        ids, rows = gradient.indices, gradient.values
    else:
        ops = fused_ops_for(variable)
        if ops is not None and optimizer._fused_apply(ops, variable, slots, gradient, lr):
            return None
        ids, rows, occurrences = sparse_rows.deduplicate(gradient)
    counts, frequency = optimizer._observe(slots, ids, occurrences)
    optimizer._update(variable).sparse(TENSORFLOW, row_storage.VariableRows(variable, slots), ids, rows, occurrences,
                                         counts, frequency, lr, optimizer.step)
    return ids, counts
