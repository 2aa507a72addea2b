"""Optimizer-state bytes per embedding row, measured from each optimizer's variables.

Run: `.venv/bin/python benchmarks/state_memory.py` (`--quick`: a 10,000-row table). Builds every optimizer
on one embedding table and divides the bytes of the variables it creates for that table by the
number of rows. Writes `benchmarks/results/state_memory.json` and prints a Markdown table.
"""

import json
import os

from absl import app, flags

# tf_keras (Keras 2) as tf.keras, chosen before TensorFlow is imported: TFRS, TFRA and the tf_keras
# optimizers compared here need it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tf_freqsgd
import tensorflow as tf

import bench_flags  # noqa: E402  (beside this script)

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

flags.DEFINE_integer("rows", 100_000, "Rows of the embedding table.")
flags.DEFINE_list("dims", ["16", "64"], "Embedding widths.")
flags.DEFINE_string("output_json", os.path.join(RESULTS_DIR, "state_memory.json"), "Where to write the rows.")
FLAGS = flags.FLAGS


def optimizers():
    return {
        "SGD (tf_keras legacy)": lambda: tf.keras.optimizers.legacy.SGD(0.1),
        "SGD (tf_keras)": lambda: tf.keras.optimizers.SGD(0.1),
        "Adagrad (tf_keras)": lambda: tf.keras.optimizers.Adagrad(0.1),
        "Adam (tf_keras)": lambda: tf.keras.optimizers.Adam(0.1),
        "CounterSGD": lambda: tf_freqsgd.CounterSGD(0.1),
        "CounterSGD, counter_halflife": lambda: tf_freqsgd.CounterSGD(0.1, counter_halflife=1000.0),
        "RowwiseAdagradCounter": lambda: tf_freqsgd.RowwiseAdagradCounter(0.1),
        "RowwiseAdagradCounter, counter_halflife": lambda: tf_freqsgd.RowwiseAdagradCounter(
            0.1, counter_halflife=1000.0
        ),
    }


def table_state_bytes(make_optimizer, rows, dim):
    """Bytes of the optimizer variables created for one rows x dim table (one training step)."""
    table = tf.Variable(tf.zeros([rows, dim]), name="table")
    optimizer = make_optimizer()
    gradient = tf.IndexedSlices(tf.ones([2, dim]), tf.constant([0, 1]), tf.constant([rows, dim]))
    optimizer.apply_gradients([(gradient, table)])
    return tf_freqsgd.optimizer_state_bytes(optimizer, rows=rows)


def main(argv):
    del argv
    bench_flags.apply_quick({"rows": 10_000})
    results = []
    for name, make_optimizer in optimizers().items():
        row = {"optimizer": name}
        for dim in map(int, FLAGS.dims):
            row[f"bytes_per_row_d{dim}"] = table_state_bytes(make_optimizer, FLAGS.rows, dim) / FLAGS.rows
        results.append(row)
    dims = list(map(int, FLAGS.dims))
    print("| optimizer | " + " | ".join(f"state bytes/row, d={d}" for d in dims) + " | vs Adagrad, d=" + str(dims[-1]) + " |")
    print("|---|" + "---|" * (len(dims) + 1))
    adagrad = next(r for r in results if r["optimizer"].startswith("Adagrad"))[f"bytes_per_row_d{dims[-1]}"]
    for row in results:
        cells = " | ".join(f"{row[f'bytes_per_row_d{d}']:g}" for d in dims)
        ratio = row[f"bytes_per_row_d{dims[-1]}"] / adagrad
        print(f"| {row['optimizer']} | {cells} | {ratio:.3g} |")
    os.makedirs(os.path.dirname(FLAGS.output_json), exist_ok=True)
    with open(FLAGS.output_json, "w") as f:
        json.dump({"rows": FLAGS.rows, "results": results}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
