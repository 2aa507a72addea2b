"""Per-row optimizer state of embedding tables: counters, frequency estimates and the effective
per-row learning rate, for log-Q correction and TensorBoard.

For a table trained by ``CounterSGD`` or ``RowwiseAdagradCounter`` after ``t`` steps, row ``k``
has counter ``c_k`` (decayed to step ``t`` with a half-life) and frequency estimate
``p_k = c_k / N_t`` (expected appearances per step; see ``tf_freqsgd.optimizers.frequency_rule``).
Its effective learning rate, the factor its summed gradient is multiplied by, is:

* CounterSGD:             ``lr_t * scale_k``, ``scale_k = clip(f_k^-power, min_scale, max_scale)``
* RowwiseAdagradCounter:  ``lr_t / (sqrt(G_k) + eps) * scale_k``
* FrequencySGD:           ``lr_t * scale_k`` with ``f_k`` the given frequency
* legacy SGD:             ``lr_t``
* legacy Adagrad:         ``mean_j lr_t / (sqrt(A_kj) + eps)`` (its per-coordinate rate, row mean)
* legacy Adam:            ``mean_j lr_t * sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v_kj) + eps)``, the
                          rate its first moment is applied at

Counter optimizers report the rows counted so far (a row never seen has no rate yet); the others
report every row of a fixed table and every key of a TFRA table.
"""

import math

import numpy as np
import tensorflow as tf
import tf_keras

from tf_freqsgd import _tf_keras_internals
from tf_freqsgd.dynamic.frequency import inner_optimizer, table_counts
from tf_freqsgd.optimizers.row_storage import gather_rows
from tf_freqsgd.models.embeddings import id_table, is_dynamic_layer
from tf_freqsgd.optimizers.array_ops import TENSORFLOW
from tf_freqsgd.optimizers.keras2.base import FrequencyAwareOptimizer
from tf_freqsgd.optimizers.counting import CountsRows


def has_counters(optimizer):
    """True when ``optimizer`` keeps a counter per row (CounterSGD, RowwiseAdagradCounter)."""
    return isinstance(inner_optimizer(optimizer), CountsRows)


def frequency_slots(optimizer, layer):
    """The tf_freqsgd optimizer's per-row state of ``layer``'s id table, by name (``counter``,
    ``accumulator``, ``frequency``, ``momentum``): ``tf.Variable`` rows for a fixed table, for a
    TFRA one ``de.Variable`` tables keyed by id (a ``StateColumn`` of one where a row's states
    share it). The optimizer must be built."""
    inner = inner_optimizer(optimizer)
    if not isinstance(inner, FrequencyAwareOptimizer):
        raise TypeError(f"{type(inner).__name__} is not a tf_freqsgd optimizer.")
    return inner.row_state(_trained_table(layer))


def _trained_table(layer):
    return layer.params if is_dynamic_layer(layer) else id_table(layer)


def batch_frequency(optimizer, layer, ids):
    """The counter optimizer's frequency estimate ``p_k = c_k / N_t`` of each of ``ids`` at the
    step being trained, this batch's occurrences included: the estimate the optimizer's update
    for this step will use. In-graph; read-only (the update itself counts)."""
    inner = inner_optimizer(optimizer)
    if not has_counters(inner):
        raise TypeError(f"{type(inner).__name__} keeps no counters: use CounterSGD or RowwiseAdagradCounter.")
    return inner.batch_frequency(_trained_table(layer), ids)


def counter_values(optimizer, layer):
    """``(ids, counts)`` of the rows counted so far (``c_k > 0``), decayed to the current step."""
    inner = inner_optimizer(optimizer)
    if is_dynamic_layer(layer):
        keys, counts = table_counts(inner, layer.params)
        keys, counts = keys.numpy(), counts.numpy()
    else:
        counts = inner.counts(id_table(layer)).numpy()
        keys = np.arange(len(counts))
    seen = counts > 0
    return keys[seen], counts[seen]


def current_learning_rate(optimizer):
    """The base rate ``lr_t`` at the current step (schedules applied)."""
    inner = inner_optimizer(optimizer)
    if isinstance(inner, tf_keras.optimizers.legacy.Optimizer):
        return float(_tf_keras_internals.decayed_learning_rate(inner))
    return float(tf.convert_to_tensor(inner.learning_rate))


def learning_rates(optimizer, layer):
    """``(ids, rates)``: the effective learning rate of each row of ``layer``'s id table (see the
    module docstring), and ``counts`` of the rows for counter optimizers (else None).

    Returns ``(ids, rates, counts)`` as NumPy arrays.
    """
    inner = inner_optimizer(optimizer)
    lr = current_learning_rate(inner)
    if isinstance(inner, FrequencyAwareOptimizer):
        return _frequency_aware_rates(inner, layer, lr)
    return _legacy_rates(inner, layer, lr)


def _frequency_aware_rates(optimizer, layer, lr):
    slots = frequency_slots(optimizer, layer)
    step = optimizer.applied_steps
    if has_counters(optimizer):
        ids, counts = counter_values(optimizer, layer)
        frequency = optimizer.frequencies(_trained_table(layer), tf.constant(ids, tf.int64)).numpy()
    elif "frequency" in slots:  # FrequencySGD: the given values
        ids, counts = _all_rows(layer, slots["frequency"])
        frequency = counts
    else:  # FrequencySGD on a table without given frequencies: plain SGD
        ids, _ = _all_rows(layer)
        return ids, np.full(len(ids), lr, np.float32), None
    # The scale a row would get at the next step (warm-up is decided by that step's number).
    scale = optimizer.rule.rate_scale(TENSORFLOW, tf.constant(counts, tf.float32), tf.constant(frequency, tf.float32),
                                      step + 1)
    rates = lr * scale.numpy()
    if "accumulator" in slots:
        accumulator = gather_rows(slots["accumulator"], tf.constant(ids, tf.int64)).numpy()
        rates = rates / (np.sqrt(accumulator) + optimizer.epsilon)
    return ids, rates, counts if has_counters(optimizer) else None


def _all_rows(layer, state=None):
    """``(ids, values)`` of every row of ``layer``'s id table, values read from ``state``."""
    if is_dynamic_layer(layer):
        keys, values = (state if state is not None else layer.params).export()
        return keys.numpy(), values.numpy()[:, 0] if state is not None else None
    rows = id_table(layer).shape[0]
    return np.arange(rows), state.numpy() if state is not None else None


def _legacy_rates(optimizer, layer, lr):
    variable = _trained_variable(optimizer, layer)
    legacy = tf_keras.optimizers.legacy
    ids, _ = _all_rows(layer)
    if isinstance(optimizer, legacy.SGD):
        return ids, np.full(len(ids), lr, np.float32), None
    if isinstance(optimizer, legacy.Adagrad):
        accumulator = _slot_rows(optimizer, layer, variable, "accumulator", ids)
        return ids, np.mean(lr / (np.sqrt(accumulator) + optimizer.epsilon), axis=1), None
    if isinstance(optimizer, legacy.Adam):
        t = float(optimizer.iterations)
        beta_1, beta_2 = (float(_tf_keras_internals.hyperparameter(optimizer, h)) for h in ("beta_1", "beta_2"))
        lr_t = lr * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t) if t else lr
        second_moment = _slot_rows(optimizer, layer, variable, "v", ids)
        return ids, np.mean(lr_t / (np.sqrt(second_moment) + optimizer.epsilon), axis=1), None
    raise TypeError(f"No per-row learning rate known for {type(optimizer).__name__}.")


def _trained_variable(optimizer, layer):
    return layer.shadow if is_dynamic_layer(layer) else id_table(layer)


def _slot_rows(optimizer, layer, variable, slot_name, ids):
    """Rows ``ids`` of a legacy optimizer's slot of ``variable`` (TFRA slots are keyed tables)."""
    if is_dynamic_layer(layer):
        # TFRA names a slot table "<table>-parameter/.../<table>-shadow/<slot name>".
        from tf_freqsgd import _tfra_internals

        slot = next(s for s in _tfra_internals.slot_tables(variable) if s.name.rsplit("/", 1)[-1] == slot_name)
        return slot.lookup(tf.constant(ids, tf.int64)).numpy()
    return tf.gather(optimizer.get_slot(variable, slot_name), ids).numpy()


class RowStateHistograms(tf_keras.callbacks.Callback):
    """Writes TensorBoard histograms of each table's counters and effective per-row learning rate
    at the end of every epoch: ``counters/<table>`` (counter optimizers only) and
    ``learning_rate/<table>``, under ``log_dir``/``row_state``, at step = epoch number (1-based).

    Args:
      log_dir: the TensorBoard directory (the Keras ``TensorBoard`` callback's, say).
      layers: ``{table name: embedding layer}``.
    """

    def __init__(self, log_dir, layers):
        super().__init__()
        self.log_dir = log_dir
        self.layers = dict(layers)
        self._writer = None

    def on_train_begin(self, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(f"{self.log_dir}/row_state")

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        with self._writer.as_default(step=epoch + 1):
            for name, layer in self.layers.items():
                _, rates, counts = learning_rates(optimizer, layer)
                tf.summary.histogram(f"learning_rate/{name}", rates)
                if counts is not None:
                    tf.summary.histogram(f"counters/{name}", counts)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
