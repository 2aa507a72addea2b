"""ctr_view, the random split and the temporal split."""

import numpy as np
import pytest

from tf_freqsgd.data import ctr_view, load_movielens, temporal_split, train_val_test_split


@pytest.fixture(scope="module")
def ratings():
    data = dict(load_movielens(num_ratings=20_000, seed=4).ratings)
    data["index"] = np.arange(20_000)  # identifies entries across parts
    return data


def test_ctr_view_drops_three_and_labels_the_rest():
    ratings = {"rating": np.array([1, 2.5, 3, 3.5, 5, 3], dtype=np.float32), "user_id": np.arange(6)}
    view = ctr_view(ratings)
    np.testing.assert_array_equal(view["user_id"], [0, 1, 3, 4])
    np.testing.assert_array_equal(view["label"], [0, 0, 1, 1])
    assert view["label"].dtype == np.float32


def test_random_split_is_disjoint_covering_and_seeded(ratings):
    parts = train_val_test_split(ratings, fractions=(0.7, 0.2, 0.1), seed=5)
    assert [len(part["index"]) for part in parts] == [14_000, 4_000, 2_000]
    np.testing.assert_array_equal(np.sort(np.concatenate([part["index"] for part in parts])), np.arange(20_000))
    again = train_val_test_split(ratings, fractions=(0.7, 0.2, 0.1), seed=5)
    other = train_val_test_split(ratings, fractions=(0.7, 0.2, 0.1), seed=6)
    np.testing.assert_array_equal(again[2]["index"], parts[2]["index"])
    assert not np.array_equal(other[2]["index"], parts[2]["index"])
    for part in parts:  # entries stay whole
        np.testing.assert_array_equal(part["user_id"], ratings["user_id"][part["index"]])


@pytest.mark.parametrize("val_last_n,test_last_n", [(1, 1), (2, 3), (0, 2)])
def test_temporal_split_takes_each_users_latest(ratings, val_last_n, test_last_n):
    train, validation, test = temporal_split(ratings, val_last_n=val_last_n, test_last_n=test_last_n)
    indices = [part["index"] for part in (train, validation, test)]
    np.testing.assert_array_equal(np.sort(np.concatenate(indices)), np.arange(20_000))  # disjoint and covering
    for part in (train, validation, test):
        assert (np.diff(part["index"]) > 0).all()  # original order kept
    # Each user gives its latest to test and the ones before to validation, one rating always staying in train.
    users, counts = np.unique(ratings["user_id"], return_counts=True)
    assert counts.min() < val_last_n + test_last_n + 1 <= counts.max()  # users of both kinds are checked
    for user, count in zip(users, counts):
        num_test = min(test_last_n, count - 1)
        num_val = min(val_last_n, count - 1 - num_test)
        latest_first = np.sort(ratings["timestamp"][ratings["user_id"] == user])[::-1]
        for part, expected in ((test, latest_first[:num_test]),
                               (validation, latest_first[num_test:num_test + num_val]),
                               (train, latest_first[num_test + num_val:])):
            np.testing.assert_array_equal(np.sort(part["timestamp"][part["user_id"] == user])[::-1], expected)


def test_temporal_split_keeps_one_train_rating_and_breaks_ties_by_position():
    ratings = {"user_id": np.array([5, 9, 9, 9, 7, 7]), "timestamp": np.array([1, 3, 3, 2, 1, 0]),
               "index": np.arange(6)}
    train, validation, test = temporal_split(ratings, val_last_n=1, test_last_n=1)
    # User 5: one rating, kept in train. User 9: ties at time 3, the later entry (2) is the latest.
    # User 7: two ratings, the earlier (time 0, entry 5) stays in train, the later goes to test.
    np.testing.assert_array_equal(test["index"], [2, 4])
    np.testing.assert_array_equal(validation["index"], [1])
    np.testing.assert_array_equal(train["index"], [0, 3, 5])


def test_splits_of_a_real_looking_record():
    record = load_movielens(num_ratings=3000, seed=1)
    train, validation, test = temporal_split(ctr_view(record.ratings))
    assert len(train["label"]) + len(validation["label"]) + len(test["label"]) == len(ctr_view(record.ratings)["label"])
    assert train["item_id"].dtype == np.int64 and test["label"].dtype == np.float32


@pytest.mark.parametrize("call,message", [
    (lambda r: temporal_split(r, val_last_n=-1), r"`val_last_n` must be an integer >= 0; got -1"),
    (lambda r: temporal_split(r, test_last_n=1.0), r"`test_last_n` must be an integer >= 0; got 1.0"),
    (lambda r: temporal_split({"user_id": r["user_id"]}), r"`ratings` lacks \['timestamp'\]"),
    (lambda r: ctr_view({"user_id": r["user_id"]}), r"`ratings` lacks \['rating'\]"),
    (lambda r: ctr_view({"rating": r["rating"], "user_id": r["user_id"][:5]}),
     r"`ratings` arrays must be 1-D or more and of one length; got lengths \{'rating': 20000, 'user_id': 5\}"),
    (lambda r: train_val_test_split([r["rating"]]), r"`ratings` must be a non-empty dict of equal-length arrays; "
                                                    r"got list"),
    (lambda r: train_val_test_split(r, fractions=(0.5, 0.5)), r"`fractions` must be three non-negative numbers"),
])
def test_bad_input(ratings, call, message):
    with pytest.raises(ValueError, match=message):
        call(ratings)
