"""One training run for test_horovod.py: a TFRA table of hashed 64-bit ids trained with CounterSGD
through ``model.fit``, either by each rank of ``horovodrun --gloo`` (a ``HvdAllToAllEmbedding``: the
rank owns the ids ``id % size == rank``) on its share of every global batch, or by one process (a
``de.keras.layers.Embedding``) on the global batches. Writes the table's ids and rows, their counters,
the counter table's own ids, the dense layer and each epoch's loss to ``<out>/rank<r>.npz`` (Horovod)
or ``<out>/one.npz``.

The data is fixed and unshuffled: 6 global batches of 64 rows of 3 ids, 3 epochs.
"""

import argparse
import os
import pathlib

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import tf_freqsgd  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_recommenders_addons import dynamic_embedding as de  # noqa: E402

VOCAB, WIDTH, GLOBAL_BATCH, STEPS, EPOCHS = 300, 8, 64, 6, 3


def global_data():
    """Zipf-distributed ids drawn from VOCAB hashed-looking ids below 2^40, and random labels."""
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**40, VOCAB, dtype=np.int64)
    ids = keys[np.minimum(rng.zipf(1.3, (GLOBAL_BATCH * STEPS, 3)), VOCAB) - 1]
    return ids, rng.normal(size=(GLOBAL_BATCH * STEPS, 1)).astype(np.float32)


def share_of(array, rank, size):
    """Rank ``rank``'s contiguous share of every global batch, in step order."""
    local = GLOBAL_BATCH // size
    steps = array.reshape(STEPS, GLOBAL_BATCH, -1)
    return steps[:, rank * local:(rank + 1) * local].reshape(STEPS * local, -1)


def build(embedding, optimizer, loss_weight):
    ids = tf.keras.Input((3,), dtype=tf.int64)
    score = tf.keras.layers.Dense(1, kernel_initializer="ones")(
        tf.keras.layers.GlobalAveragePooling1D()(embedding(ids)))
    model = tf.keras.Model(ids, score)
    model.compile(optimizer, "mse", loss_weights=[loss_weight])
    return model


def sorted_export(table):
    keys, values = table.export()
    order = np.argsort(keys.numpy())
    return keys.numpy()[order], values.numpy()[order]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["horovod", "one"], required=True)
    parser.add_argument("--ranks", type=int, default=2, help="one: the number of ranks whose sum of losses it trains on.")
    parser.add_argument("--counting", choices=["occurrence", "presence"], default="occurrence")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    # A constant initializer: TFRA draws a missing id's row anew at each lookup.
    initializer = tf.keras.initializers.Constant(0.05)
    optimizer = tf_freqsgd.CounterSGD(0.2, counting=args.counting)
    ids, labels = global_data()
    if args.mode == "horovod":
        import horovod.tensorflow as hvd

        hvd.init()
        rank, size = hvd.rank(), hvd.size()
        embedding = de.keras.layers.HvdAllToAllEmbedding(embedding_size=WIDTH, initializer=initializer, name="items")
        if args.counting == "occurrence":
            # TFRA's constructor keeps its with_unique argument and leaves the layer's own on: each rank
            # then sends an id once per batch, and its owner would count the ranks that hold it rather
            # than its occurrences. Presence counting is the same either way.
            embedding.with_unique = False
        # synchronous: the dense layer's gradients summed over the ranks (Horovod allreduce).
        model = build(embedding, de.DynamicEmbeddingOptimizer(optimizer, synchronous=True), 1.0)
        ids, labels = share_of(ids, rank, size), share_of(labels, rank, size)
        batch, out = GLOBAL_BATCH // size, pathlib.Path(args.out) / f"rank{rank}.npz"
    else:
        embedding = de.keras.layers.Embedding(WIDTH, initializer=initializer, name="items")
        # The ranks' gradients are summed, each of the mean loss of its share: one process takes
        # the same steps on the global batch with its mean loss times the number of ranks.
        model = build(embedding, optimizer, float(args.ranks))
        batch, out = GLOBAL_BATCH, pathlib.Path(args.out) / "one.npz"

    history = model.fit(ids, labels, batch_size=batch, epochs=EPOCHS, shuffle=False, verbose=0)
    keys, rows = sorted_export(embedding.params)
    counter_keys, _ = sorted_export(optimizer.row_state(embedding.params)["counter"])
    np.savez(out, keys=keys, table=rows, counts=optimizer.counts(embedding.params, tf.constant(keys)).numpy(),
             counter_keys=counter_keys, dense=np.concatenate([v.numpy().ravel() for v in model.layers[-1].weights]),
             losses=np.array(history.history["loss"]), applied_steps=np.array(int(optimizer.applied_steps.numpy())))


if __name__ == "__main__":
    main()
