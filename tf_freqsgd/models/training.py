"""Training plumbing shared by the example models: optimizers by name, known id frequencies,
per-epoch shuffles that a resumed run repeats exactly, and ``fit`` that resumes from a checkpoint.
"""

import math
import os

import numpy as np
import tensorflow as tf
import tf_keras

from tf_freqsgd import _tf_keras_internals
# The examples' names, kept in tf_freqsgd.choices (no TensorFlow import there) and read here too.
from tf_freqsgd.choices import COUNTER_OPTIMIZERS, DENSE_ADAM_RATE, OPTIMIZER_DESCRIPTIONS, OPTIMIZERS  # noqa: F401
from tf_freqsgd.optimizers import CounterSGD, FrequencySGD, RowwiseAdagradCounter
from tf_freqsgd.models.embeddings import id_tables, is_dynamic_layer, table_name


def make_optimizer(name, learning_rate, *, frequencies=None):
    """The optimizer of ``OPTIMIZERS`` named ``name``.

    The tf_keras *legacy* SGD, Adagrad and Adam are used for ``sgd``, ``adagrad`` and ``adam``:
    on ``IndexedSlices`` gradients they update the batch's rows only, where the new tf_keras
    optimizers sweep whole tables (README, step time). ``frequencies`` (``FrequencySGD``'s
    known frequencies, see ``known_frequencies``) is required for ``frequency_sgd`` only.
    Optimizers that meet a TFRA dynamic table wrap themselves in TFRA's optimizer (tf_freqsgd's
    do so when built; the legacy ones are wrapped by ``build_optimizer``).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; expected one of {OPTIMIZERS}.")
    if (name == "frequency_sgd") != (frequencies is not None):
        raise ValueError("`frequencies` is required by frequency_sgd and taken by no other optimizer.")
    legacy = tf_keras.optimizers.legacy
    constructors = {
        "sgd": lambda: legacy.SGD(learning_rate),
        "adagrad": lambda: legacy.Adagrad(learning_rate),
        "adam": lambda: legacy.Adam(learning_rate),
        "counter_sgd": lambda: CounterSGD(learning_rate),
        "counter_sgd_adam": lambda: CounterSGD(learning_rate,
                                               dense_optimizer=tf_keras.optimizers.Adam(DENSE_ADAM_RATE)),
        "frequency_sgd": lambda: FrequencySGD(frequencies, learning_rate),
        "rowwise_adagrad_counter": lambda: RowwiseAdagradCounter(learning_rate),
    }
    return constructors[name]()


def id_frequencies(ids, num_ids, steps_per_epoch):
    """``p_k = count_k / steps_per_epoch``: appearances of id ``k`` per training step.

    Ids never seen get the value of one appearance (``FrequencySGD`` needs every value > 0;
    such a row never gets a gradient, so its value is never used).
    """
    counts = np.bincount(np.asarray(ids), minlength=num_ids)
    if len(counts) > num_ids:
        raise ValueError(f"ids go up to {len(counts) - 1}; expected ids in [0, {num_ids}).")
    return np.maximum(counts, 1).astype(np.float64) / steps_per_epoch, counts


def known_frequencies(tables, steps_per_epoch):
    """``FrequencySGD``'s ``frequencies`` from training ids.

    Args:
      tables: ``[(embedding layer, training ids of it, number of ids)]``; the layers built.
      steps_per_epoch: training steps per epoch.

    Returns ``{table name: p}``, ``p`` as ``id_frequencies``, for every id table of each layer
    (``embeddings.id_tables``); for a TFRA layer, ``(ids, p)`` of the ids seen (other ids get
    ``f = 1``, plain SGD, and are never trained anyway).
    """
    frequencies = {}
    for layer, ids, num_ids in tables:
        p, counts = id_frequencies(ids, num_ids, steps_per_epoch)
        if is_dynamic_layer(layer):
            seen = np.flatnonzero(counts)
            frequencies[layer.params.name] = (seen.astype(np.int64), p[seen])
        else:
            frequencies.update({table_name(table): p for table in id_tables(layer)})
    return frequencies


def build_optimizer(model):
    """Creates ``model.optimizer``'s state now (the model must be built), so that a checkpoint
    restores into it and counters can be read from the first step on. Legacy optimizers training
    a TFRA table are wrapped in ``de.DynamicEmbeddingOptimizer`` here."""
    optimizer = model.optimizer
    variables = model.trainable_variables
    dynamic = [v for v in variables if type(v).__module__.startswith("tensorflow_recommenders_addons")]
    if not isinstance(optimizer, tf_keras.optimizers.legacy.Optimizer):
        optimizer.build(variables)
    elif dynamic:
        # TFRA makes the slots of its tables when the wrapped optimizer first applies gradients.
        if not hasattr(optimizer, "_bp_v2"):
            from tensorflow_recommenders_addons import dynamic_embedding as de

            de.DynamicEmbeddingOptimizer(optimizer)
    else:
        _tf_keras_internals.create_slots(optimizer, variables)


def epoch_batches(features, batch_size, *, seed, first_epoch, epochs, label=None):
    """Batches of epochs ``first_epoch .. epochs - 1`` in one dataset, and the steps per epoch.

    Epoch ``e`` visits the rows in a permutation drawn from ``(seed, e)`` alone, so an
    interrupted run resumed at epoch ``e`` sees the batches an uninterrupted one would.
    ``features``: dict of equal-length arrays; ``label``: a key of it to yield as the label.
    """
    size = len(next(iter(features.values())))
    if size == 0:
        raise ValueError("No training examples.")
    steps = math.ceil(size / batch_size)
    tensors = {key: tf.constant(value) for key, value in features.items()}

    def batches_of_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(size, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        # Slices of the permutation: one tf.data element per batch, not per example.
        return tf.data.Dataset.range(0, size, batch_size).map(lambda start: order[start:start + batch_size])

    def gather(rows):
        batch = {key: tf.gather(value, rows) for key, value in tensors.items()}
        return (batch, batch.pop(label)) if label else batch

    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(batches_of_epoch)
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE), steps


class _SaveAtEpochEnd(tf_keras.callbacks.Callback):
    def __init__(self, manager, epoch):
        super().__init__()
        self.manager, self.epoch = manager, epoch

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


def restore(model, checkpoint_dir):
    """Restores the model, its optimizer and the epoch count from ``checkpoint_dir``'s latest
    checkpoint; returns ``(manager, epoch variable)`` (epoch 0 when there is none)."""
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=2)
    if manager.latest_checkpoint:
        status = checkpoint.restore(manager.latest_checkpoint)
        try:
            status.assert_existing_objects_matched()
        except AssertionError as error:
            raise ValueError(
                f"{manager.latest_checkpoint} was written by another model or optimizer; use a new "
                f"checkpoint directory ({error})") from None
        if any(is_dynamic_layer(layer) for layer in model.submodules):
            from tf_freqsgd.dynamic import saving  # TFRA: only for models that have its tables

            # Written on another number of parameter servers (or none): each row to its shard.
            saving.reshard_tables(manager.latest_checkpoint, checkpoint)
    return manager, epoch


def fit_resumable(model, features, *, epochs, batch_size, seed, label=None, checkpoint_dir=None,
                  callbacks=(), **fit_kwargs):
    """``model.fit`` over ``epoch_batches``, resuming from ``checkpoint_dir`` when it holds a
    checkpoint, and saving model, optimizer and epoch there after every epoch.

    The model must be built and compiled; its optimizer is built here (``build_optimizer``).
    Returns ``(first epoch trained, History or None when nothing was left to train)``.
    """
    build_optimizer(model)
    callbacks = list(callbacks)
    first_epoch = 0
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
        manager, epoch = restore(model, checkpoint_dir)
        first_epoch = int(epoch)
        callbacks.append(_SaveAtEpochEnd(manager, epoch))
    if first_epoch >= epochs:
        return first_epoch, None
    dataset, steps = epoch_batches(features, batch_size, seed=seed, first_epoch=first_epoch, epochs=epochs,
                                   label=label)
    history = model.fit(dataset, epochs=epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
                        callbacks=callbacks, **fit_kwargs)
    return first_epoch, history
