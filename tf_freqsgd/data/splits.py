"""Views and splits of a ratings dict (one NumPy array per field, one entry per rating).

All functions take and return dicts like ``MovieLens.ratings``: ``user_id``, ``item_id``,
``rating``, ``timestamp``, ``label`` (any extra equal-length arrays are carried along).
"""

import numpy as np

from tf_freqsgd.data.ids import distinct_and_index


def check_ratings(ratings, required=()):
    """The number of entries of a ratings dict, after checking its arrays line up."""
    if not isinstance(ratings, dict) or not ratings:
        raise ValueError(f"`ratings` must be a non-empty dict of equal-length arrays; got {type(ratings).__name__}.")
    missing = [key for key in required if key not in ratings]
    if missing:
        raise ValueError(f"`ratings` lacks {missing}; it has {sorted(ratings)}.")
    lengths = {key: np.shape(value)[0] if np.ndim(value) else None for key, value in ratings.items()}
    if len(set(lengths.values())) != 1 or None in lengths.values():
        raise ValueError(f"`ratings` arrays must be 1-D or more and of one length; got lengths {lengths}.")
    return next(iter(lengths.values()))


def ctr_view(ratings):
    """The click-through view: ratings of exactly 3 dropped, ``label = 1`` when rating > 3 else 0."""
    check_ratings(ratings, required=("rating",))
    keep = ratings["rating"] != 3
    view = {key: value[keep] for key, value in ratings.items()}
    view["label"] = (view["rating"] > 3).astype(np.float32)
    return view


def train_val_test_split(ratings, fractions=(0.8, 0.1, 0.1), seed=0):
    """Three dicts of the same arrays, by a seeded random permutation of the entries.

    Sizes are ``round(f * n)`` for the first two fractions; the third part takes the rest.
    """
    fractions = tuple(fractions)
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"`fractions` must be three non-negative numbers summing to 1; got {fractions!r}.")
    size = check_ratings(ratings)
    order = np.random.default_rng(seed).permutation(size)
    cuts = np.cumsum([int(round(f * size)) for f in fractions[:2]])
    return [{key: value[part] for key, value in ratings.items()} for part in np.split(order, cuts)]


def temporal_split(ratings, val_last_n=1, test_last_n=1):
    """Per user, the latest ``test_last_n`` ratings to test, the ``val_last_n`` before them to validation.

    Order is by ``timestamp``, ties broken by position in ``ratings`` (later counts as later).
    Every user keeps at least one rating in train: a user with ``c`` ratings gives
    ``t = min(test_last_n, c - 1)`` to test and ``min(val_last_n, c - 1 - t)`` to validation.
    Each part keeps the entries in their original order. Returns ``[train, validation, test]``.
    """
    for name, value in (("val_last_n", val_last_n), ("test_last_n", test_last_n)):
        if not (isinstance(value, (int, np.integer)) and value >= 0):
            raise ValueError(f"`{name}` must be an integer >= 0; got {value!r}.")
    size = check_ratings(ratings, required=("user_id", "timestamp"))
    _, users = distinct_and_index(np.asarray(ratings["user_id"]))
    # By user, then time, then position: stable sorts, the last one by the first key.
    by_time = np.argsort(ratings["timestamp"], kind="stable")
    order = by_time[np.argsort(users[by_time], kind="stable")]
    per_user = np.bincount(users)
    first_of_user = np.cumsum(per_user) - per_user
    from_end = np.empty(size, dtype=np.int64)  # 0 for each user's latest rating
    from_end[order] = per_user[users[order]] - 1 - (np.arange(size) - first_of_user[users[order]])
    num_test = np.minimum(test_last_n, per_user - 1)[users]
    num_val = np.minimum(val_last_n, per_user - 1 - np.minimum(test_last_n, per_user - 1))[users]
    test = from_end < num_test
    validation = ~test & (from_end < num_test + num_val)
    train = ~test & ~validation
    return [{key: value[part] for key, value in ratings.items()} for part in (train, validation, test)]
