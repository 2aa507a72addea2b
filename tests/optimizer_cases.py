"""Shared builders and cases of the optimizer tests (both Keras fronts): the rule options every
update is checked with, optimizers paired with their NumPy reference, raw sparse gradients."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from reference import ReferenceOptimizer

ROWS, DIM = 12, 3

# Handled by tf_keras before the update rule; the reference never sees them.
KERAS_ONLY = {"clipvalue", "clipnorm", "global_clipnorm", "use_ema", "ema_momentum"}

KIND_OF = {"CounterSGD": "sgd", "FrequencySGD": "sgd", "RowwiseAdagradCounter": "rowwise_adagrad"}


def random_batches(steps=6, batch=10, rows=ROWS, dim=DIM, seed=0, id_dtype=np.int64):
    """Raw sparse gradients with repeated ids, as an embedding lookup produces them."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        ids = rng.integers(0, rows, size=batch).astype(id_dtype)
        yield ids, rng.normal(size=(batch, dim)).astype(np.float32)


def cowclip_batches():
    """The raw sparse gradients of the CowClip tests: 24 ids over 12 rows, most repeated in a batch."""
    return list(random_batches(steps=6, batch=24))


def make_pair(class_name, shape=(ROWS, DIM), **options):
    """The optimizer under test and its NumPy reference, with the same options."""
    reference_options = {key: value for key, value in options.items() if key not in KERAS_ONLY}
    if class_name == "FrequencySGD":
        reference_options["frequencies"] = options["frequencies"]["table"]
    optimizer = getattr(tf_freqsgd, class_name)(**options)
    return optimizer, ReferenceOptimizer(shape, kind=KIND_OF[class_name], **reference_options)


def sparse_gradient(ids, values, rows=ROWS):
    return tf.IndexedSlices(tf.constant(values), tf.constant(ids), tf.constant([rows, values.shape[1]]))


def initial_weights(shape=(ROWS, DIM), seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


COUNTER_OPTIONS = {
    "defaults": {},
    "presence": {"counting": "presence"},
    "count_estimate": {"estimate": "count"},
    "decay_occurrence": {"counter_halflife": 3.0},
    "decay_presence": {"counter_halflife": 2.0, "counting": "presence"},
    "decay_count_estimate": {"counter_halflife": 4.0, "estimate": "count"},
    "warmup": {"warmup_steps": 3},
    "clamps": {"min_scale": 0.6, "max_scale": 0.9},
    "tail_threshold": {"tail_id_threshold": 2.0},
    "power_one": {"power": 1.0},
    "power_zero": {"power": 0.0},
    "decoupled_decay": {"weight_decay": 0.05},
    "l2_decay": {"weight_decay": 0.05, "weight_decay_mode": "l2"},
    "decay_with_warmup_and_halflife": {"weight_decay": 0.05, "warmup_steps": 2, "counter_halflife": 3.0},
}
SGD_ONLY_OPTIONS = {
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.5, "nesterov": True},
    "momentum_and_decay": {"momentum": 0.9, "weight_decay": 0.05, "estimate": "count"},
}
# CowClip (counter optimizers), its bounds near the norms of cowclip_batches' summed rows: some rows
# clipped, some not.
COWCLIP_OPTIONS = {
    "ratio": {"cowclip_ratio": 1.0},
    "min_norm_presence_decay": {"cowclip_ratio": 0.3, "cowclip_min_norm": 1.0, "counting": "presence",
                                "counter_halflife": 3.0, "weight_decay": 0.05},
}
COWCLIP_CASES = (
    [pytest.param("CounterSGD", options, id=f"CounterSGD-{name}") for name, options in
     {**COWCLIP_OPTIONS, "momentum": {"cowclip_ratio": 1.0, "momentum": 0.9, "nesterov": True}}.items()]
    + [pytest.param("RowwiseAdagradCounter", options, id=f"RowwiseAdagradCounter-{name}") for name, options in
       COWCLIP_OPTIONS.items()])
FREQUENCY_OPTIONS = {
    "frequency": {},
    "count": {"estimate": "count"},
    "warmup_clamp": {"warmup_steps": 2, "max_scale": 2.0},
    "decay": {"weight_decay": 0.05},
    "count_decay_l2": {"estimate": "count", "weight_decay": 0.05, "weight_decay_mode": "l2"},
    "momentum": {"momentum": 0.9, "nesterov": True},
}
