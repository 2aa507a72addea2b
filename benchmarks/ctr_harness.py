"""Matrix-factorisation CTR training shared by the benchmarks: data, model, tuning, metrics.

Protocol: CTR view of the ratings (rating > 3 positive, rating 3 dropped), 80/10/10 random split
by a fixed seed, a logistic matrix factorisation (user and item vectors plus per-id biases,
N(0, 0.1^2) initialisation), sigmoid cross-entropy averaged over the batch. Each optimizer
configuration gets a learning-rate grid of the same size; the rate and the epoch are chosen on the
validation split, and test AUC is reported at that epoch.
"""

import os

import numpy as np
# tf_keras (Keras 2) as tf.keras, chosen before TensorFlow is imported: TFRS, TFRA and the tf_keras
# optimizers compared here need it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf

import bench_flags  # noqa: E402  (beside this script)
from tf_freqsgd import data as data_lib
from tf_freqsgd.models import train_ctr_model

ML100K_DIR = bench_flags.ML100K_DIR


def read_ml100k(data_dir=ML100K_DIR):
    """MovieLens 100K's u.data as the arrays of ``tf_freqsgd.data.make_interactions``, or None."""
    path = os.path.join(data_dir, "u.data")
    if not os.path.exists(path):
        return None
    table = np.loadtxt(path, dtype=np.int64)
    ratings = table[:, 2].astype(np.float32)
    return {"user_id": table[:, 0], "item_id": table[:, 1], "rating": ratings, "timestamp": table[:, 3],
            "label": (ratings > 3).astype(np.float32)}


def ctr_split(data, seed=42):
    """CTR view, split 80/10/10."""
    return data_lib.train_val_test_split(data_lib.ctr_view(data), seed=seed)


def validation_and_test_auc(make_optimizer, data, epochs, seed=0):
    """Per-epoch AUC on the validation and test splits of ``data`` (train, validation, test)."""
    train, validation, test = data
    curves, _, _ = train_ctr_model(make_optimizer, train, {"validation": validation, "test": test}, epochs,
                                   seed=seed)
    return {f"{name}_auc": [point["auc"] for point in curve] for name, curve in curves.items()}


def tune(make_optimizer, grid, data, epochs, seed=0):
    """Best (learning rate, epoch, validation AUC, test AUC) over the grid, chosen on validation.

    A rate that diverges (the optimizers reject non-finite gradients) counts as a failed point.
    """
    best = None
    for learning_rate in grid:
        try:
            curves = validation_and_test_auc(lambda: make_optimizer(learning_rate), data, epochs, seed)
        except tf.errors.InvalidArgumentError:
            print(f"    learning rate {learning_rate:g} diverged", flush=True)
            continue
        scores = np.nan_to_num(curves["validation_auc"], nan=0.0)
        epoch = int(np.argmax(scores))
        candidate = (learning_rate, epoch + 1, curves["validation_auc"][epoch], curves["test_auc"][epoch])
        if best is None or candidate[2] > best[2]:
            best = candidate
    if best is None:
        raise RuntimeError(f"every learning rate of {grid} diverged")
    return best
