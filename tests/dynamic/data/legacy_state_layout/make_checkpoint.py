"""Writes ``ckpt``: RowwiseAdagradCounter on a TFRA table in the state layout before one table held a row's
states (its counter and its accumulator in a width-1 table each). Run with tf_freqsgd at commit 41f3dd5:

    git worktree add /tmp/old 41f3dd5
    PYTHONPATH=/tmp/old .venv/bin/python tests/dynamic/data/legacy_state_layout/make_checkpoint.py \
        tests/dynamic/data/legacy_state_layout
"""
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_freqsgd  # noqa: E402
from tensorflow_recommenders_addons import dynamic_embedding as de  # noqa: E402

out = sys.argv[1]
tf.keras.utils.set_random_seed(0)
ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
embedding = de.keras.layers.Embedding(4, initializer=tf.keras.initializers.Constant(0.1), name="legacy_layout")
pooled = tf.keras.layers.GlobalAveragePooling1D()(embedding(ids))
model = tf.keras.Model(ids, tf.keras.layers.Dense(1, kernel_initializer="ones")(pooled))
model.compile(tf_freqsgd.RowwiseAdagradCounter(0.5), "mse", run_eagerly=True)
features = np.array([[5, 7, -3], [5, 2**40, 7]], np.int64)
for _ in range(3):
    model.train_on_batch(features, np.ones((2, 1), np.float32))
tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(os.path.join(out, "ckpt"))
