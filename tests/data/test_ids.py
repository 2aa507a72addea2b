"""The id lookups: dense tables and the sort-based path for other ids give np.unique's answers."""

import numpy as np
import pytest

from tf_freqsgd.data.ids import distinct_and_index, rows_of


@pytest.mark.parametrize("ids", [
    np.random.default_rng(0).integers(0, 5000, 20_000),  # dense tables
    np.random.default_rng(1).integers(-10, 5000, 20_000),  # negative ids: sorting
    np.random.default_rng(2).integers(0, 2**40, 20_000),  # beyond the dense limit: sorting
    np.random.default_rng(3).integers(0, 50, 1000).astype(np.float64),  # not integers: sorting
])
def test_distinct_and_index_is_np_unique(ids):
    distinct, index = distinct_and_index(ids)
    expected_distinct, expected_index = np.unique(ids, return_inverse=True)
    np.testing.assert_array_equal(distinct, expected_distinct)
    np.testing.assert_array_equal(index, expected_index)


@pytest.mark.parametrize("table_ids", [np.array([30, 4, 17, 9]), np.array([30, 4, 2**40, 9])])
def test_rows_of_finds_positions_and_marks_absent_ids(table_ids):
    ids = np.array([4, 9, 30, 4, 5, -3, 10**6, 2**41, table_ids[2]])
    np.testing.assert_array_equal(rows_of(table_ids, ids), [1, 3, 0, 1, -1, -1, -1, -1, 2])
