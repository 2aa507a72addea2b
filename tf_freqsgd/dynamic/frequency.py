"""Admission and eviction of dynamic-embedding rows by their counters, and table sizes.

Admission (``admission_count`` on ``CounterSGD`` / ``RowwiseAdagradCounter``): an id is counted
from its first appearance, but its embedding row (and its TFRA optimizer slots) is kept only once
its counter reaches the threshold; until then its lookups return the table's default value.

Eviction (``evict``, or the ``FrequencyEviction`` callback): removes the rows, counters and
every optimizer table entry of ids whose count has fallen below ``min_count`` (decayed to the
current step when the optimizer has a half-life) or that rank beyond ``top_n`` by count.
"""

import tensorflow as tf

from tf_freqsgd import arguments
from tf_freqsgd.optimizers.row_storage import own_tables, remove_rows
from tf_freqsgd.optimizers.counting import CountsRows


def table_counts(optimizer, table):
    """``(keys, counts)`` of every id the counter of dynamic table ``table`` (a ``de.Variable`` or
    its trainable) holds, decayed to the optimizer's last applied step."""
    inner = inner_optimizer(optimizer)
    keys, _ = inner.row_state(table)["counter"].export()
    return keys, inner.counts(table, keys)


def evict(optimizer, min_count=None, top_n=None):
    """Removes rarely seen ids from every dynamic table ``optimizer`` trains.

    An id goes when its (decayed) count is below ``min_count``, or when it ranks beyond
    ``top_n`` by count (ties broken by the order TFRA exports keys). Its embedding row, its TFRA
    optimizer slots and this optimizer's counter and accumulator all go. Returns
    ``{table name: ids evicted}``.
    """
    min_count, top_n = eviction_arguments(min_count, top_n)
    evicted = {}
    for name, (variable, slots) in tables_of(optimizer).items():
        keys, counts = table_counts(optimizer, variable)
        leaving = tf.zeros_like(counts, tf.bool)
        if min_count is not None:
            leaving |= counts < min_count
        if top_n is not None:
            rank = tf.argsort(tf.argsort(counts, direction="DESCENDING", stable=True), stable=True)
            leaving |= rank >= top_n
        gone = tf.boolean_mask(keys, leaving)
        remove_rows(variable, gone)
        for table in own_tables(slots):
            table.remove(gone)
        evicted[name] = int(tf.size(gone))
    return evicted


def eviction_arguments(min_count, top_n):
    """``(min_count, top_n)`` checked: a finite number >= 0 and an integer >= 0, at least one given."""
    if min_count is None and top_n is None:
        raise ValueError("eviction needs min_count, top_n or both.")
    return (arguments.number("min_count", min_count, 0.0, maximum=None, allow_none=True),
            arguments.integer("top_n", top_n, allow_none=True))


def table_sizes(optimizer):
    """``{table name: {"rows": embedding rows, "counted": ids the counter holds}}``."""
    return {name: {"rows": int(variable.params.size()), "counted": int(slots["counter"].size())}
            for name, (variable, slots) in tables_of(optimizer).items()}


def inner_optimizer(optimizer):
    """The optimizer doing the update, inside TFRA's or a loss-scale wrapper."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def tables_of(optimizer):
    """The dynamic tables ``optimizer`` (or the optimizer it wraps, as a loss-scale one does)
    trains: ``{name: (its TFRA trainable, {state name: its table, or its StateColumn of one})}``."""
    inner = inner_optimizer(optimizer)
    if not isinstance(inner, CountsRows):
        raise TypeError(f"{type(inner).__name__} keeps no counters: use CounterSGD or RowwiseAdagradCounter.")
    return getattr(inner, "dynamic_tables", {})
