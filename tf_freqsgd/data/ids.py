"""Raw ids to contiguous indices, by dense lookup tables for the id ranges MovieLens uses."""

import numpy as np

# Integer ids in [0, 2^24) get dense tables (at most 128 MiB), one O(1) lookup an entry: over 25M
# ratings the sort of np.unique or a binary search costs ~4-7 s each, the tables well under 1 s.
_DENSE_ID_LIMIT = 1 << 24


def _dense(ids):
    return np.issubdtype(ids.dtype, np.integer) and ids.size and ids.min() >= 0 and ids.max() < _DENSE_ID_LIMIT


def distinct_and_index(ids):
    """The distinct ids in increasing order, and each entry's index among them (np.unique's inverse)."""
    if _dense(ids):
        present = np.zeros(ids.max() + 1, dtype=bool)
        present[ids] = True
        return np.flatnonzero(present), (np.cumsum(present) - 1)[ids]
    return np.unique(ids, return_inverse=True)


def rows_of(table_ids, ids):
    """Each of ``ids``' position in ``table_ids`` (distinct ids), -1 where it is absent."""
    if _dense(table_ids):
        row_of = np.full(table_ids.max() + 1, -1, dtype=np.int64)
        row_of[table_ids] = np.arange(len(table_ids))
        inside = (ids >= 0) & (ids < len(row_of))
        return np.where(inside, row_of[np.where(inside, ids, 0)], -1)
    order = np.argsort(table_ids)
    position = np.minimum(np.searchsorted(table_ids[order], ids), len(table_ids) - 1)
    return np.where(table_ids[order][position] == ids, order[position], -1)
