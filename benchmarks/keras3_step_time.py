"""Time per training step with Keras 3 (and tf_keras in the same environment), as a ratio to Keras 3's
SGD in the same run.

Run: `make bench-keras3` (`.venv3.12/bin/python benchmarks/keras3_step_time.py`: TensorFlow 2.21;
`--quick`: a 100K-row table, few steps). A model of one `Embedding(rows, dim)` table (Keras' own,
or `tf_freqsgd.layers.RowEmbedding`), a `Flatten` and a `Dense(1)`, trained with `train_on_batch`
on batches of `batch` Zipf (1.05) ids; each optimizer in its own process (Keras 3 and tf_keras cannot share one), each figure the median of
timed blocks after a warm-up. Writes `benchmarks/results/keras3_step_time.json` and prints a
Markdown table.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

import bench_flags  # noqa: E402  (beside this script)

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

flags.DEFINE_integer("rows", 1_000_000, "Rows of the embedding table.")
flags.DEFINE_integer("dim", 64, "Its width.")
flags.DEFINE_integer("batch", 8192, "Ids per step.")
flags.DEFINE_integer("blocks", 7, "Timed blocks; the median is reported.")
flags.DEFINE_integer("steps_per_block", 10, "Steps per block.")
flags.DEFINE_string("output_dir", RESULTS_DIR, "Where the JSON goes.")
flags.DEFINE_string("measure", None, "Internal: measure this optimizer in this process and print its figure.")
flags.DEFINE_string("layer", "keras.layers.Embedding", "Internal: the embedding layer of --measure.")
FLAGS = flags.FLAGS

# (label, Keras, optimizer code, TF_FREQSGD_OPS, embedding layer)
KERAS3_EMBEDDING, ROW_EMBEDDING = "keras.layers.Embedding", "tf_freqsgd.layers.RowEmbedding"
OPTIMIZERS = [
    ("SGD (Keras 3)", "keras3", "keras.optimizers.SGD(0.1)", "auto", KERAS3_EMBEDDING),
    ("Adagrad (Keras 3)", "keras3", "keras.optimizers.Adagrad(0.1)", "auto", KERAS3_EMBEDDING),
    ("CounterSGD (Keras 3), fused op", "keras3", "tf_freqsgd.CounterSGD(0.1)", "custom", KERAS3_EMBEDDING),
    ("CounterSGD (Keras 3), pure TF", "keras3", "tf_freqsgd.CounterSGD(0.1)", "tf", KERAS3_EMBEDDING),
    ("RowwiseAdagradCounter (Keras 3), fused op", "keras3", "tf_freqsgd.RowwiseAdagradCounter(0.1)", "custom",
     KERAS3_EMBEDDING),
    ("SGD (Keras 3), RowEmbedding", "keras3", "keras.optimizers.SGD(0.1)", "auto", ROW_EMBEDDING),
    ("Adagrad (Keras 3), RowEmbedding", "keras3", "keras.optimizers.Adagrad(0.1)", "auto", ROW_EMBEDDING),
    ("CounterSGD (Keras 3), fused op, RowEmbedding", "keras3", "tf_freqsgd.CounterSGD(0.1)", "custom", ROW_EMBEDDING),
    ("RowwiseAdagradCounter (Keras 3), fused op, RowEmbedding", "keras3", "tf_freqsgd.RowwiseAdagradCounter(0.1)",
     "custom", ROW_EMBEDDING),
    ("SGD (tf_keras legacy)", "tf_keras", "keras.optimizers.legacy.SGD(0.1)", "auto", "keras.layers.Embedding"),
    ("Adagrad (tf_keras legacy)", "tf_keras", "keras.optimizers.legacy.Adagrad(0.1)", "auto", "keras.layers.Embedding"),
    ("CounterSGD (tf_keras), fused op", "tf_keras", "tf_freqsgd.CounterSGD(0.1)", "custom", "keras.layers.Embedding"),
]


def measure(code, layer):
    """Median milliseconds of a train_on_batch step with the optimizer ``code`` and the embedding
    layer ``layer`` build."""
    import numpy as np
    import tensorflow as tf

    import tf_freqsgd.layers  # noqa: F401  (the code may name it)

    keras = tf.keras
    rng = np.random.default_rng(0)
    batches = [(np.minimum(rng.zipf(1.05, (FLAGS.batch, 1)), FLAGS.rows) - 1, np.zeros((FLAGS.batch, 1), np.float32))
               for _ in range(8)]
    keras.utils.set_random_seed(0)
    ids = keras.Input((1,), dtype="int64")
    names = {"keras": keras, "tf_freqsgd": tf_freqsgd}
    embedding = eval(layer, names)(FLAGS.rows, FLAGS.dim)
    model = keras.Model(ids, keras.layers.Dense(1)(keras.layers.Flatten()(embedding(ids))))
    model.compile(optimizer=eval(code, names), loss="mse")
    for features, labels in batches[:3]:
        model.train_on_batch(features, labels)
    blocks = []
    for _ in range(FLAGS.blocks):
        start = time.perf_counter()
        for step in range(FLAGS.steps_per_block):
            model.train_on_batch(*batches[step % len(batches)])
        blocks.append((time.perf_counter() - start) / FLAGS.steps_per_block * 1e3)
    return statistics.median(blocks)


def main(argv):
    del argv
    if FLAGS.measure is not None:
        print(json.dumps({"step_ms": measure(FLAGS.measure, FLAGS.layer)}))
        return
    bench_flags.apply_quick({"rows": 100_000, "blocks": 3, "steps_per_block": 5})
    import tensorflow as tf

    results = {}
    for label, keras_kind, code, path, layer in OPTIMIZERS:
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1" if keras_kind == "tf_keras" else "0", TF_FREQSGD_OPS=path,
                   TF_CPP_MIN_LOG_LEVEL="3")
        command = [sys.executable, os.path.abspath(__file__), f"--measure={code}", f"--layer={layer}",
                   f"--rows={FLAGS.rows}", f"--dim={FLAGS.dim}", f"--batch={FLAGS.batch}", f"--blocks={FLAGS.blocks}",
                   f"--steps_per_block={FLAGS.steps_per_block}"]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
        if run.returncode:
            raise RuntimeError(f"{label} failed:\n{run.stderr[-3000:]}")
        results[label] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{label}: {results[label]['step_ms']:.2f} ms", flush=True)
    baseline = results["SGD (Keras 3)"]["step_ms"]
    for row in results.values():
        row["step_ratio"] = row["step_ms"] / baseline
    record = {"tensorflow": tf.__version__, "rows": FLAGS.rows, "dim": FLAGS.dim, "batch": FLAGS.batch,
              "blocks": FLAGS.blocks, "steps_per_block": FLAGS.steps_per_block, "results": results}
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    with open(os.path.join(FLAGS.output_dir, "keras3_step_time.json"), "w") as f:
        json.dump(record, f, indent=2)
    print("\n| optimizer | step (ms) | step / Keras 3 SGD |\n|---|---|---|")
    for label, row in results.items():
        print(f"| {label} | {row['step_ms']:.2f} | {row['step_ratio']:.2f} |")


if __name__ == "__main__":
    app.run(main)
