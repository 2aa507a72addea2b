"""TensorFlow helpers for sparse steps: the batch's rows of an ``IndexedSlices`` gradient."""

import tensorflow as tf


def deduplicate(gradient):
    """Sums the rows of repeated ids in one pass: ``(unique ids, summed rows, occurrences)``."""
    ids, positions = tf.unique(gradient.indices)
    num_unique = tf.shape(ids)[0]
    rows = tf.math.unsorted_segment_sum(gradient.values, positions, num_unique)
    occurrences = tf.math.unsorted_segment_sum(
        tf.ones_like(positions, dtype=tf.float32), positions, num_unique
    )
    return ids, rows, occurrences

