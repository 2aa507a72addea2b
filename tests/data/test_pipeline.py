"""as_dataset: batches, passes in fresh seeded orders, (features, label) pairs, Keras fit."""

import numpy as np
import pytest
import tensorflow as tf

from tf_freqsgd.data import as_dataset, load_movielens


@pytest.fixture(scope="module")
def ratings():
    data = dict(load_movielens(num_ratings=1000, seed=2).ratings)
    data["index"] = np.arange(1000)
    return data


def one_pass(dataset, key="index"):
    return np.concatenate([batch[key].numpy() for batch in dataset])


def test_batches_hold_the_features(ratings):
    dataset = as_dataset(ratings, 300, features=("user_id", "item_id", "index"))
    batches = list(dataset)
    assert len(dataset) == 4
    assert [len(batch["index"]) for batch in batches] == [300, 300, 300, 100]
    assert set(batches[0]) == {"user_id", "item_id", "index"}
    assert batches[0]["item_id"].dtype == tf.int64
    for batch in batches:
        np.testing.assert_array_equal(batch["item_id"].numpy(), ratings["item_id"][batch["index"].numpy()])


def test_each_pass_is_a_new_seeded_permutation(ratings):
    dataset = as_dataset(ratings, 128, features="index", seed=7)
    first, second = one_pass(dataset), one_pass(dataset)
    np.testing.assert_array_equal(np.sort(first), np.arange(1000))
    np.testing.assert_array_equal(np.sort(second), np.arange(1000))
    assert not np.array_equal(first, second) and not np.array_equal(first, np.arange(1000))
    rebuilt = as_dataset(ratings, 128, features="index", seed=7)  # same seed: the same sequence of passes
    np.testing.assert_array_equal(one_pass(rebuilt), first)
    np.testing.assert_array_equal(one_pass(rebuilt), second)
    assert not np.array_equal(one_pass(as_dataset(ratings, 128, features="index", seed=8)), first)


def test_without_shuffle_order_is_kept(ratings):
    np.testing.assert_array_equal(one_pass(as_dataset(ratings, 64, shuffle=False, features="index")), np.arange(1000))


def test_label_gives_pairs_and_keras_trains_on_them(ratings):
    dataset = as_dataset(ratings, 100, label="label")
    features, labels = next(iter(dataset))
    assert set(features) == {"user_id", "item_id"} and labels.dtype == tf.float32 and labels.shape == (100,)
    user = tf.keras.Input(shape=(), name="user_id", dtype=tf.int64)
    item = tf.keras.Input(shape=(), name="item_id", dtype=tf.int64)
    user_vector = tf.keras.layers.Embedding(943, 4)(user)
    item_vector = tf.keras.layers.Embedding(1682, 4)(item)
    logit = tf.keras.layers.Dot(axes=1)([user_vector, item_vector])
    model = tf.keras.Model({"user_id": user, "item_id": item}, logit)
    model.compile(optimizer="sgd", loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    history = model.fit(dataset, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, r"`batch_size` must be a positive integer; got 0"),
    ({"batch_size": 8, "features": ("user_id", "genre")}, r"`ratings` lacks \['genre'\]"),
    ({"batch_size": 8, "label": "click"}, r"`ratings` lacks \['click'\]"),
    ({"batch_size": 8, "features": ()}, r"`features` must name at least one key"),
    ({"batch_size": 8, "seed": None}, r"`seed` must be an integer; got None"),
])
def test_bad_arguments(ratings, kwargs, message):
    with pytest.raises(ValueError, match=message):
        as_dataset(ratings, **kwargs)
