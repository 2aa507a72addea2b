"""The built-in data: deterministic, MovieLens-shaped ratings with Zipf-distributed ids.

Generative model (NumPy only, fully determined by ``seed``):

* Popularity: user ``u`` and item ``i`` are drawn with probability proportional to
  ``1 / rank ** exponent`` (``user_zipf_exponent``, ``item_zipf_exponent``), where ranks are a seeded
  permutation of the ids (id order is not popularity order). Items get the longer tail: by default
  about one item in nine is seen fewer than 5 times in 100K ratings (MovieLens 100K: one in five).
* Preference: hidden factors ``x_u, y_i ~ N(0, I_dim / dim)`` and biases ``a_u, b_i ~ N(0, 0.5^2)``;
  ``score = 4 * x_u . y_i + a_u + b_i + N(0, noise^2)``.
* Ratings: ``score`` mapped to 1..5 by fixed quantile cut points, so ratings spread like
  MovieLens'; timestamps increase with the interaction index. The CTR view keeps ratings other than
  3, positive when above 3, as MovieLens CTR benchmarks do.

Rare ids get few, noisy observations: exactly where frequency-aware rates are meant to help.

Item metadata (``make_items``, from a random stream of its own so the ratings do not depend on it):
``movie_id = item_id + 1``, titles ``"Synthetic Movie <movie_id> (<year>)"`` with a year uniform in
1919..1998, and genres drawn from MovieLens's 19 (``MOVIELENS_GENRES``) as MovieLens 100K's movies
carry them: the number of genres of a movie follows ML-100K's shares of movies with 1..6 genres,
and the genres are drawn without replacement in proportion to how many ML-100K movies carry each.
"""

import numpy as np

_RATING_QUANTILES = (0.06, 0.17, 0.44, 0.78)  # MovieLens 100K's shares of ratings 1..4 (cumulative)

# MovieLens 100K's genres in u.genre order (the genre flags of u.item); movies.dat and movies.csv
# use the same names (the CSV releases add "IMAX" and "(no genres listed)").
MOVIELENS_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                    "Romance", "Sci-Fi", "Thriller", "War", "Western")
# Counted in ML-100K's u.item: movies carrying each genre, and movies carrying 1, 2, ..., 6 genres.
_MOVIES_PER_GENRE = (2, 251, 135, 42, 122, 505, 109, 50, 725, 22, 24, 92, 56, 61, 247, 101, 251, 71, 27)
_MOVIES_BY_GENRE_COUNT = (833, 569, 215, 51, 11, 3)


def _require_positive_int(name, value):
    if not (isinstance(value, (int, np.integer)) and value > 0):
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")


def zipf_probabilities(num_ids, exponent, rng):
    """Probabilities ∝ 1/rank**exponent over a random assignment of ranks to ids."""
    weights = 1.0 / np.arange(1, num_ids + 1, dtype=np.float64) ** exponent
    probabilities = np.empty(num_ids)
    probabilities[rng.permutation(num_ids)] = weights / weights.sum()
    return probabilities


def make_interactions(num_users=943, num_items=1682, num_ratings=100_000, user_zipf_exponent=0.6,
                      item_zipf_exponent=1.1, dim=8, noise=0.5, seed=0):
    """A dict of arrays ``user_id``, ``item_id`` (int64), ``rating`` (float32, 1..5),
    ``timestamp`` (int64) and ``label`` (float32, rating > 3), one entry per interaction."""
    for name, value in (("num_users", num_users), ("num_items", num_items), ("num_ratings", num_ratings),
                        ("dim", dim)):
        _require_positive_int(name, value)
    for name, value in (("user_zipf_exponent", user_zipf_exponent), ("item_zipf_exponent", item_zipf_exponent)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"`{name}` must be a number > 0; got {value!r}.")
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"`noise` must be a number >= 0; got {noise!r}.")
    rng = np.random.default_rng(seed)
    users = rng.choice(num_users, size=num_ratings, p=zipf_probabilities(num_users, user_zipf_exponent, rng))
    items = rng.choice(num_items, size=num_ratings, p=zipf_probabilities(num_items, item_zipf_exponent, rng))
    user_factors = rng.normal(0.0, 1.0 / np.sqrt(dim), size=(num_users, dim))
    item_factors = rng.normal(0.0, 1.0 / np.sqrt(dim), size=(num_items, dim))
    user_bias = rng.normal(0.0, 0.5, size=num_users)
    item_bias = rng.normal(0.0, 0.5, size=num_items)
    score = 4.0 * np.einsum("nd,nd->n", user_factors[users], item_factors[items])
    score += user_bias[users] + item_bias[items] + rng.normal(0.0, noise, size=num_ratings)
    ratings = 1 + np.searchsorted(np.quantile(score, _RATING_QUANTILES), score)
    timestamps = 874_724_710 + np.cumsum(rng.integers(1, 600, size=num_ratings))
    return {
        "user_id": users.astype(np.int64),
        "item_id": items.astype(np.int64),
        "rating": ratings.astype(np.float32),
        "timestamp": timestamps.astype(np.int64),
        "label": (ratings > 3).astype(np.float32),
    }


def make_items(num_items, seed=0):
    """Item metadata for ``make_interactions``' item ids: a dict of arrays indexed by ``item_id``,
    ``movie_id`` (int64, ``item_id + 1``), ``title`` and ``genres`` (object arrays of str, genres
    "|"-joined in ``MOVIELENS_GENRES`` order)."""
    _require_positive_int("num_items", num_items)
    rng = np.random.default_rng([seed, 1])  # a stream apart from make_interactions' (which uses `seed`)
    years = rng.integers(1919, 1999, size=num_items)
    genre_counts = 1 + rng.choice(len(_MOVIES_BY_GENRE_COUNT), size=num_items,
                                  p=np.divide(_MOVIES_BY_GENRE_COUNT, sum(_MOVIES_BY_GENRE_COUNT)))
    genre_shares = np.divide(_MOVIES_PER_GENRE, sum(_MOVIES_PER_GENRE))
    genres = ["|".join(MOVIELENS_GENRES[g] for g in np.sort(rng.choice(len(MOVIELENS_GENRES), size=k, replace=False,
                                                                         p=genre_shares)))
              for k in genre_counts]
    movie_ids = np.arange(1, num_items + 1, dtype=np.int64)
    return {
        "movie_id": movie_ids,
        "title": np.array([f"Synthetic Movie {m} ({y})" for m, y in zip(movie_ids, years)], dtype=object),
        "genres": np.array(genres, dtype=object),
    }
