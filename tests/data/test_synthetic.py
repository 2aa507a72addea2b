import numpy as np
import pytest

from tf_freqsgd.data import make_interactions, make_items


@pytest.fixture(scope="module")
def data():
    return make_interactions(seed=0)


def test_same_seed_same_arrays_other_seed_differs(data):
    again = make_interactions(seed=0)
    for key in data:
        np.testing.assert_array_equal(again[key], data[key])
    assert not np.array_equal(make_interactions(seed=1)["item_id"], data["item_id"])


def test_movielens_shape(data):
    assert len(data["user_id"]) == 100_000
    assert data["user_id"].dtype == np.int64 and data["item_id"].dtype == np.int64
    assert 0 <= data["user_id"].min() and data["user_id"].max() < 943
    assert 0 <= data["item_id"].min() and data["item_id"].max() < 1682
    assert set(np.unique(data["rating"])) == {1, 2, 3, 4, 5}
    assert (np.diff(data["timestamp"]) > 0).all()
    np.testing.assert_array_equal(data["label"], data["rating"] > 3)


def test_item_popularity_is_long_tailed(data):
    counts = np.bincount(data["item_id"], minlength=1682)
    assert counts.max() / counts.sum() > 50 / 1682  # the head item: far above uniform
    assert (counts < 5).mean() > 0.05  # and a tail of rare items
    # Popularity is not id order.
    assert np.argmax(counts) != 0


def test_ratings_follow_the_hidden_preferences(data):
    # A popular item's mean rating is stable across halves of the data: the signal is learnable.
    item = np.argmax(np.bincount(data["item_id"]))
    ratings = data["rating"][data["item_id"] == item]
    half = len(ratings) // 2
    assert abs(ratings[:half].mean() - ratings[half:].mean()) < 0.1


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"num_users": 0}, "num_users"),
        ({"num_items": -5}, "num_items"),
        ({"num_ratings": 2.5}, "num_ratings"),
        ({"item_zipf_exponent": 0.0}, "item_zipf_exponent"),
        ({"user_zipf_exponent": -1.0}, "user_zipf_exponent"),
        ({"noise": -0.1}, "noise"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make_interactions(**kwargs)



def test_items_need_a_positive_count():
    with pytest.raises(ValueError, match="`num_items` must be a positive integer; got 0"):
        make_items(0)
