"""Serving export: SavedModels of TFRA dynamic-embedding models that stock TensorFlow loads."""

from tf_freqsgd.export.serving import (
    export_for_serving,
    saved_model_ops,
    static_embedding_from,
)

__all__ = ["export_for_serving", "saved_model_ops", "static_embedding_from"]
