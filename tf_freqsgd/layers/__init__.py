"""Embedding layers that shrink the served table: MLET (factorised training, collapsed inference)
and PEP (learnable pruning, then a masked retrain), with ``frequency_mask`` (a table's sparsity spent by
id frequency, for ``MaskedEmbedding``); and, with Keras 3, ``RowEmbedding``, an
``Embedding`` whose lookup reads the batch's rows only. Served graphs' id lookups, stock ops only:
``StaticEmbedding`` (a frozen id -> row table), ``SparseTableEmbedding`` (a pruned table's
non-zero entries), ``IdIndex`` (raw ids -> row indices, unknown ones flagged) and
``FallbackForUnknown`` (a fixed answer for them)."""

from tf_freqsgd._compat import KERAS3, active_keras

from tf_freqsgd.layers.frequency_mask import frequency_mask, frequency_widths
from tf_freqsgd.layers.id_index import FallbackForUnknown, IdIndex
from tf_freqsgd.layers.mlet import MLETEmbedding
from tf_freqsgd.layers.pep import (
    GRANULARITIES,
    MaskedEmbedding,
    PEPEmbedding,
    PEPSparsityCallback,
    initial_embeddings_path,
    mask_path,
    soft_threshold,
)
from tf_freqsgd.layers.sparse_table import SparseTableEmbedding
from tf_freqsgd.layers.static_embedding import StaticEmbedding

if active_keras() == KERAS3:
    from tf_freqsgd.layers.row_embedding import RowEmbedding  # noqa: F401

__all__ = [
    "FallbackForUnknown",
    "GRANULARITIES",
    "IdIndex",
    "MLETEmbedding",
    "MaskedEmbedding",
    "PEPEmbedding",
    "PEPSparsityCallback",
    "SparseTableEmbedding",
    "StaticEmbedding",
    *(["RowEmbedding"] if active_keras() == KERAS3 else []),
    "frequency_mask",
    "frequency_widths",
    "initial_embeddings_path",
    "mask_path",
    "soft_threshold",
]
