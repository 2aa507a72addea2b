"""`make demo`: SGD, Adagrad and CounterSGD on the built-in synthetic data, one table.

Trains the same logistic matrix factorisation (user and item embeddings plus per-id biases, same
initialisation, same batches) on the CTR view of the built-in MovieLens-shaped data with Zipf ids,
with each optimizer, and prints test AUC, test log-loss, optimizer-state bytes (measured from the
optimizer's variables) and training time.

The default learning rates were chosen on the validation split by
`benchmarks/choose_estimate.py` (5-point grids, same protocol as the README's table).
"""

import json
import os
import time

from absl import app, flags

# tf_keras (Keras 2) as tf.keras, chosen before TensorFlow is imported: TFRS, TFRA and the tf_keras
# optimizers compared here need it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tf_freqsgd
import tensorflow as tf

from tf_freqsgd.data import ctr_view, make_interactions, train_val_test_split
from tf_freqsgd.models import train_ctr_model

flags.DEFINE_integer("num_ratings", 100_000, "Interactions to generate (MovieLens 100K size by default).")
flags.DEFINE_integer("epochs", 3, "Training epochs.")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_integer("dim", 32, "Embedding width.")
flags.DEFINE_integer("seed", 0, "Seed of the data, the split and the initialisation.")
flags.DEFINE_float("sgd_lr", 30.0, "Learning rate of SGD.")
flags.DEFINE_float("adagrad_lr", 10.0, "Learning rate of Adagrad.")
flags.DEFINE_float("counter_lr", 30.0, "Learning rate of CounterSGD (default hyper-parameters otherwise).")
flags.DEFINE_string("output_json", None, "Also write the table's rows to this JSON file.")
FLAGS = flags.FLAGS


def optimizers():
    return {
        "SGD (tf_keras legacy)": (FLAGS.sgd_lr, lambda: tf.keras.optimizers.legacy.SGD(FLAGS.sgd_lr)),
        "Adagrad (tf_keras legacy)": (FLAGS.adagrad_lr, lambda: tf.keras.optimizers.legacy.Adagrad(FLAGS.adagrad_lr)),
        "CounterSGD": (FLAGS.counter_lr, lambda: tf_freqsgd.CounterSGD(FLAGS.counter_lr)),
    }


def main(argv):
    del argv
    data = ctr_view(make_interactions(num_ratings=FLAGS.num_ratings, seed=FLAGS.seed))
    train, _, test = train_val_test_split(data, seed=FLAGS.seed)
    num_users, num_items = int(data["user_id"].max()) + 1, int(data["item_id"].max()) + 1
    embedding_rows = 2 * (num_users + num_items)  # user, item and their bias tables
    print(f"Synthetic CTR data: {len(train['label'])} train / {len(test['label'])} test interactions, "
          f"{num_users} users, {num_items} items (Zipf popularity); {FLAGS.epochs} epochs, "
          f"batch {FLAGS.batch_size}, d={FLAGS.dim}.", flush=True)
    # AutoGraph converts tf_keras's training code once per process (seconds); pay it up front so
    # the first optimizer's time is not charged for it.
    started = time.perf_counter()
    small = {key: value[:FLAGS.batch_size] for key, value in train.items()}
    train_ctr_model(lambda: tf.keras.optimizers.legacy.SGD(0.1), small, {}, 1, FLAGS.batch_size, 4,
                    num_users=num_users, num_items=num_items)
    print(f"  (warm-up, once per process: {time.perf_counter() - started:.1f} s)", flush=True)
    rows = []
    for name, (learning_rate, make_optimizer) in optimizers().items():
        curves, model, seconds = train_ctr_model(
            make_optimizer, train, {"test": test}, FLAGS.epochs, FLAGS.batch_size, FLAGS.dim, FLAGS.seed,
            num_users=num_users, num_items=num_items)
        state = tf_freqsgd.optimizer_state_bytes(model.optimizer)
        final = curves["test"][-1]
        rows.append({"optimizer": name, "learning_rate": learning_rate, "test_auc": final["auc"],
                     "test_log_loss": final["log_loss"], "state_bytes": state,
                     "state_bytes_per_embedding_row": state / embedding_rows, "train_seconds": seconds})
        print(f"  {name}: test AUC {final['auc']:.4f} after {seconds:.1f} s", flush=True)
    print("\n| optimizer | lr | test AUC | test log-loss | optimizer state (bytes) | bytes per embedding row "
          "| train time (s) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['optimizer']} | {row['learning_rate']:g} | {row['test_auc']:.4f} | "
              f"{row['test_log_loss']:.4f} | {row['state_bytes']:,} | {row['state_bytes_per_embedding_row']:.1f} "
              f"| {row['train_seconds']:.1f} |")
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    app.run(main)
