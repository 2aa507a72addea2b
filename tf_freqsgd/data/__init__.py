"""MovieLens-shaped data as NumPy arrays and ``tf.data`` pipelines.

* `load_movielens`: the built-in synthetic generator (the default), raw MovieLens release files
  (100K, 1M, latest-small, latest, 20M, 25M) or the local TFDS cache, as a `MovieLens` record.
* `ctr_view`, `train_val_test_split` (random), `temporal_split` (per user, the latest N).
* `as_dataset`: batches of a ratings dict for Keras.
* `make_interactions`, `make_items`, `zipf_probabilities`: the synthetic generator's parts.
"""

from tf_freqsgd.data.movielens import DATASETS, MovieLens, MovieLensFormatError, load_movielens
from tf_freqsgd.data.pipeline import as_dataset
from tf_freqsgd.data.splits import ctr_view, temporal_split, train_val_test_split
from tf_freqsgd.data.synthetic import MOVIELENS_GENRES, make_interactions, make_items, zipf_probabilities

__all__ = ["DATASETS", "MOVIELENS_GENRES", "MovieLens", "MovieLensFormatError", "as_dataset", "ctr_view",
           "load_movielens", "make_interactions", "make_items", "temporal_split", "train_val_test_split",
           "zipf_probabilities"]
