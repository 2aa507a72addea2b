"""Embedding layers that shrink the served table: MLET (factorised training, collapsed inference)
and PEP (learnable pruning, then a masked retrain)."""

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

__all__ = [
    "GRANULARITIES",
    "MLETEmbedding",
    "MaskedEmbedding",
    "PEPEmbedding",
    "PEPSparsityCallback",
    "initial_embeddings_path",
    "mask_path",
    "soft_threshold",
]
