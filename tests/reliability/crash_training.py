"""A training process for test_crash_recovery.py: trains a model step by step, saving a checkpoint
every SAVE_EVERY steps with tf.train.CheckpointManager; can SIGKILL itself during one save; can
resume from the latest checkpoint. Writes its final weights to ``--out`` (npz).

The batch of step s is a function of s alone, so a resumed run sees the batches an uninterrupted one
does. Kill points, both inside ``CheckpointManager.save`` of the ``--kill_at_save``-th save:

* ``data``: while TensorFlow writes the checkpoint's data (a thread watches for its ``_temp`` folder).
* ``state``: after the data files are complete, as the ``checkpoint`` state file is being updated.
"""

import argparse
import os
import signal
import threading

import numpy as np

import tf_freqsgd  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management

SAVE_EVERY = 5
BATCH = 256


def batch(step, vocabulary):
    rng = np.random.default_rng(1000 + step)
    ids = np.minimum(rng.zipf(1.3, size=(BATCH, 3)), vocabulary) - 1
    return ids.astype(np.int64), rng.normal(size=(BATCH, 1)).astype(np.float32)


def build(table, vocabulary):
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    if table == "dynamic":
        from tensorflow_recommenders_addons import dynamic_embedding as de

        embedding = de.keras.layers.Embedding(16, initializer=tf.keras.initializers.RandomNormal(seed=1),
                                              name="crash_table")
    else:
        embedding = tf.keras.layers.Embedding(vocabulary, 16, name="crash_table")
    pooled = tf.keras.layers.GlobalAveragePooling1D()(embedding(ids))
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1)(pooled))
    model.compile(tf_freqsgd.CounterSGD(0.05, counter_halflife=20.0, momentum=0.5), "mse")
    return model, embedding


def final_weights(model, embedding, table):
    weights = {f"dense_{i}": w.numpy() for i, w in enumerate(model.layers[-1].weights)}
    if table == "dynamic":
        keys, values = embedding.params.export()
        order = np.argsort(keys.numpy())
        weights["keys"], weights["rows"] = keys.numpy()[order], values.numpy()[order]
        weights["counts"] = model.optimizer.counts(embedding.params, tf.constant(weights["keys"])).numpy()
    else:
        weights["rows"] = embedding.embeddings.numpy()
        weights["counts"] = model.optimizer.counts(embedding.embeddings).numpy()
    weights["iterations"] = np.array(int(model.optimizer.iterations))
    return weights


def kill_during_data_write(prefix):
    temp = prefix + "_temp"

    def watch():
        while not os.path.isdir(temp):
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


def kill_during_state_update():
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    checkpoint_management.update_checkpoint_state_internal = die


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", choices=["static", "dynamic"], required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--vocabulary", type=int, default=1_000_000)
    parser.add_argument("--kill_at_save", type=int, default=0)
    parser.add_argument("--kill_point", choices=["data", "state"], default="data")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    model, embedding = build(args.table, args.vocabulary)
    checkpoint = tf.train.Checkpoint(model=model)
    manager = tf.train.CheckpointManager(checkpoint, args.dir, max_to_keep=2)
    first_step = 0
    if args.resume:
        model.optimizer.build(model.trainable_variables)
        status = checkpoint.restore(manager.latest_checkpoint)
        if args.table == "static":  # (TFRA's shadow copies of a batch's rows are not checkpointed)
            status.assert_existing_objects_matched()
        first_step = int(model.optimizer.iterations)
        print(f"resumed from {os.path.basename(manager.latest_checkpoint)} at step {first_step}", flush=True)
    for step in range(first_step, args.steps):
        model.train_on_batch(*batch(step, args.vocabulary))
        if (step + 1) % SAVE_EVERY == 0:
            number = (step + 1) // SAVE_EVERY
            if number == args.kill_at_save:
                if args.kill_point == "data":
                    kill_during_data_write(os.path.join(args.dir, f"ckpt-{number}"))
                else:
                    kill_during_state_update()
            manager.save(checkpoint_number=number)
    np.savez(args.out, **final_weights(model, embedding, args.table))


if __name__ == "__main__":
    main()
