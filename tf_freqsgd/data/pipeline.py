"""``tf.data`` input pipelines over a ratings dict."""

import numpy as np
import tensorflow as tf

from tf_freqsgd.data.splits import check_ratings


def as_dataset(ratings, batch_size, *, shuffle=True, seed=0, features=("user_id", "item_id"), label=None):
    """Batches of ``{feature: tensor}``, or ``(features, labels)`` pairs when ``label`` names a key.

    With ``shuffle`` every pass over the dataset (each Keras epoch) visits all entries once in a
    new order; the sequence of orders is fixed by ``seed``. The order is a permutation of indices,
    drawn once per pass, and batches gather from the arrays: no shuffle buffer of entries, so the
    memory is one copy of the columns used plus 8 bytes an entry for the permutation (25M ratings
    included). The last batch may be smaller; ``len(dataset)`` is the number of batches.
    """
    features = (features,) if isinstance(features, str) else tuple(features)
    size = check_ratings(ratings, required=features + ((label,) if label is not None else ()))
    if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an integer; got {seed!r}.")
    if not features:
        raise ValueError("`features` must name at least one key of `ratings`.")
    columns = {key: tf.constant(ratings[key]) for key in features + ((label,) if label is not None else ())}

    def batch_indices(pass_seed):
        indices = tf.range(size, dtype=tf.int64)
        if shuffle:
            indices = tf.random.experimental.stateless_shuffle(indices, seed=tf.stack([pass_seed, seed]))
        # Slices of the permutation, not a per-entry dataset: one tf.data element per batch.
        starts = tf.data.Dataset.range(0, size, batch_size)
        return starts.map(lambda start: indices[start:start + batch_size])

    def gather(indices):
        batch = {key: tf.gather(column, indices) for key, column in columns.items()}
        if label is None:
            return batch
        return {key: batch[key] for key in features}, batch[label]

    pass_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    return (pass_seeds.flat_map(batch_indices)
            .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .apply(tf.data.experimental.assert_cardinality(-(-size // batch_size)))  # known to Keras and len()
            .prefetch(tf.data.AUTOTUNE))
