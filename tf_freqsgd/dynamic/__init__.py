"""TFRA dynamic embeddings (hash tables keyed by 64-bit ids) trained by tf_freqsgd's optimizers."""

from tf_freqsgd.dynamic.tables import KeyedRows, gather_rows, is_dynamic

__all__ = ["KeyedRows", "gather_rows", "is_dynamic"]
