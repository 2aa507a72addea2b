"""IdIndex (raw ids to rows, unknown ones flagged) and FallbackForUnknown, the served graphs' id
translation; StaticEmbedding shares the search."""

import numpy as np
import pytest
import tensorflow as tf

from tf_freqsgd.layers import FallbackForUnknown, IdIndex, StaticEmbedding

INT64_MAX = np.iinfo(np.int64).max


def test_id_index_maps_raw_ids_to_rows_and_flags_unknown_ones():
    index = IdIndex([50, 7, 1000, 3], name="movies")
    rows, unknown = index(tf.constant([3, 50, 8, 1000, 7, -1, INT64_MAX], tf.int64))
    np.testing.assert_array_equal(rows, [3, 0, 0, 2, 1, 0, 0])  # unknown ids: row 0
    np.testing.assert_array_equal(unknown, [False, False, True, False, False, True, True])
    rows, unknown = IdIndex([943, 12, 5], [9, 4, 2])(tf.constant([[5, 12], [943, 6]], tf.int32))
    np.testing.assert_array_equal(rows, [[2, 4], [9, 0]])
    np.testing.assert_array_equal(unknown, [[False, False], [False, True]])
    np.testing.assert_array_equal(IdIndex([INT64_MAX, 1])(tf.constant([INT64_MAX], tf.int64))[0], [0])


def test_id_index_without_ids_knows_none():
    rows, unknown = IdIndex(np.zeros([0], np.int64))(tf.constant([0, 5], tf.int64))
    np.testing.assert_array_equal(rows, [0, 0])
    np.testing.assert_array_equal(unknown, [True, True])


def test_id_index_arguments_are_checked():
    with pytest.raises(ValueError, match=r"IdIndex 'users': the ids must be distinct"):
        IdIndex([1, 2, 1], name="users")
    with pytest.raises(ValueError, match=r"ids and indices must be vectors of one length; got shapes \(2,\) and \(3,\)"):
        IdIndex([1, 2], [0, 1, 2])


def test_fallback_replaces_the_examples_any_flag_marks():
    values = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    first, second = tf.constant([False, True, False]), tf.constant([False, False, True])
    np.testing.assert_array_equal(FallbackForUnknown([-1, -2])([values, first, second]),
                                  [[1, 2], [-1, -2], [-1, -2]])
    scores = FallbackForUnknown(np.float32(3.5))([tf.constant([0.5, 1.5]), tf.constant([True, False])])
    assert scores.dtype == tf.float32
    np.testing.assert_array_equal(scores, [3.5, 1.5])


def test_static_embedding_finds_its_keys_by_the_same_search():
    layer = StaticEmbedding([9, INT64_MAX, 2], np.array([[1.0], [2.0], [3.0]]), np.array([-1.0]))
    np.testing.assert_array_equal(layer(tf.constant([2, 9, INT64_MAX, 5], tf.int64))[:, 0], [3, 1, 2, -1])
    np.testing.assert_array_equal(StaticEmbedding([], np.zeros([0, 1]), [7.0])(tf.constant([4]))[:, 0], [7])
