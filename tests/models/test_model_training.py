"""Optimizers by name, known frequencies, per-epoch batches and checkpoint restores."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from tf_freqsgd.models import training
from tf_freqsgd.models.embeddings import make_embedding


def epochs_of(dataset, steps):
    """The rows of every batch, grouped by epoch."""
    batches = [batch["row"].numpy() for batch in dataset]
    return [batches[i:i + steps] for i in range(0, len(batches), steps)]


def test_each_epoch_is_a_permutation_fixed_by_seed_and_epoch_alone():
    features = {"row": np.arange(10), "label": np.arange(10) * 2.0}
    straight, steps = training.epoch_batches(features, 4, seed=7, first_epoch=0, epochs=3)
    assert steps == 3
    straight = epochs_of(straight, steps)
    resumed = epochs_of(training.epoch_batches(features, 4, seed=7, first_epoch=2, epochs=3)[0], steps)
    assert len(straight) == 3 and len(resumed) == 1
    for left, right in zip(straight[2], resumed[0]):
        np.testing.assert_array_equal(left, right)
    for epoch in straight:
        assert [len(batch) for batch in epoch] == [4, 4, 2]
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(10))
    assert not np.array_equal(np.concatenate(straight[0]), np.concatenate(straight[1]))
    other_seed = epochs_of(training.epoch_batches(features, 4, seed=8, first_epoch=0, epochs=1)[0], steps)
    assert not np.array_equal(np.concatenate(other_seed[0]), np.concatenate(straight[0]))


def test_epoch_batches_yield_labels_apart():
    features = {"row": np.arange(5), "label": np.arange(5) * 2.0}
    dataset, _ = training.epoch_batches(features, 5, seed=0, first_epoch=0, epochs=1, label="label")
    batch, labels = next(iter(dataset))
    assert set(batch) == {"row"}
    np.testing.assert_array_equal(labels.numpy(), batch["row"].numpy() * 2.0)
    with pytest.raises(ValueError, match="No training examples"):
        training.epoch_batches({"row": np.zeros(0)}, 5, seed=0, first_epoch=0, epochs=1)


def test_id_frequencies_are_appearances_per_step():
    p, counts = training.id_frequencies([0, 0, 2, 0], num_ids=4, steps_per_epoch=2)
    np.testing.assert_array_equal(counts, [3, 0, 1, 0])
    np.testing.assert_allclose(p, [1.5, 0.5, 0.5, 0.5])  # unseen ids: one appearance
    with pytest.raises(ValueError, match=r"ids go up to 4; expected ids in \[0, 3\)"):
        training.id_frequencies([0, 4], num_ids=3, steps_per_epoch=1)


def test_known_frequencies_are_keyed_by_each_id_table():
    layers = {kind: make_embedding(kind, 4, 2, name=f"{kind}_freq", **options)
              for kind, options in [("table", {}), ("dynamic", {}), ("mlet", {"inner_dim": 3}),
                                    ("pep", {"granularity": "feature_dim"})]}
    for layer in layers.values():
        layer(tf.constant([0], tf.int64))
    ids = np.array([1, 1, 3])
    frequencies = training.known_frequencies([(layer, ids, 4) for layer in layers.values()], steps_per_epoch=2)
    p = [0.5, 1.0, 0.5, 0.5]
    assert set(frequencies) == {"table_freq/embeddings", layers["dynamic"].params.name, "mlet_freq/embeddings",
                                "pep_freq/embeddings", "pep_freq/threshold"}
    for name in ("table_freq/embeddings", "mlet_freq/embeddings", "pep_freq/embeddings", "pep_freq/threshold"):
        np.testing.assert_allclose(frequencies[name], p)
    dynamic_ids, dynamic_p = frequencies[layers["dynamic"].params.name]
    np.testing.assert_array_equal(dynamic_ids, [1, 3])
    np.testing.assert_allclose(dynamic_p, [1.0, 0.5])


def test_optimizers_by_name():
    legacy = tf.keras.optimizers.legacy
    expected = {"sgd": legacy.SGD, "adagrad": legacy.Adagrad, "adam": legacy.Adam,
                "counter_sgd": tf_freqsgd.CounterSGD, "rowwise_adagrad_counter": tf_freqsgd.RowwiseAdagradCounter}
    for name, cls in expected.items():
        optimizer = training.make_optimizer(name, 0.25)
        assert type(optimizer) is cls and float(optimizer.learning_rate) == 0.25
    assert isinstance(training.make_optimizer("frequency_sgd", 0.1, frequencies={}), tf_freqsgd.FrequencySGD)
    with pytest.raises(ValueError, match=r"Unknown optimizer 'rmsprop'; expected one of \('sgd'"):
        training.make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="`frequencies` is required by frequency_sgd and taken by no other"):
        training.make_optimizer("frequency_sgd", 0.1)
    with pytest.raises(ValueError, match="`frequencies` is required by frequency_sgd and taken by no other"):
        training.make_optimizer("sgd", 0.1, frequencies={})


def small_model(optimizer):
    ids = tf.keras.Input(shape=(), dtype=tf.int64, name="row")
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1)(make_embedding("table", 10, 2, name="rows")(ids)))
    model.compile(optimizer, loss="mse")
    return model


def test_fit_resumable_saves_every_epoch_and_stops_when_done(tmp_path):
    features = {"row": np.arange(10), "label": np.ones(10, np.float32)}
    model = small_model(tf_freqsgd.CounterSGD(0.1))
    first_epoch, history = training.fit_resumable(model, features, epochs=2, batch_size=4, seed=0, label="label",
                                                  checkpoint_dir=str(tmp_path), verbose=0)
    assert first_epoch == 0 and len(history.history["loss"]) == 2
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")
    again = small_model(tf_freqsgd.CounterSGD(0.1))
    assert training.fit_resumable(again, features, epochs=2, batch_size=4, seed=0, label="label",
                                  checkpoint_dir=str(tmp_path), verbose=0) == (2, None)
    assert int(again.optimizer.iterations) == 6
    for restored, saved in zip(again.weights, model.weights):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())


def test_a_checkpoint_of_another_optimizer_is_refused(tmp_path):
    features = {"row": np.arange(10), "label": np.ones(10, np.float32)}
    training.fit_resumable(small_model(tf_freqsgd.RowwiseAdagradCounter(0.1)), features, epochs=1, batch_size=4,
                           seed=0, label="label", checkpoint_dir=str(tmp_path), verbose=0)
    with pytest.raises(ValueError, match="ckpt-1 was written by another model or optimizer; use a new checkpoint"):
        training.fit_resumable(small_model(tf.keras.optimizers.legacy.Adam(0.1)), features, epochs=2, batch_size=4,
                               seed=0, label="label", checkpoint_dir=str(tmp_path), verbose=0)
