"""Measures which `estimate` (and `counting`) CounterSGD should default to.

Run: `.venv/bin/python benchmarks/choose_estimate.py` (about 10 minutes per data set here).
For each configuration: the learning rate is chosen on validation from a 5-point grid (seed 0),
then 3 more seeds train at that rate; the table shows test AUC (mean ± std) at the epoch chosen on
validation. Data: MovieLens 100K from `--ml100k_dir` when present, and the built-in synthetic
Zipf data. Writes `benchmarks/results/choose_estimate.json`. `--quick`: synthetic data of 20,000
ratings, 1 epoch, 1 seed (a smoke run, under a minute).
"""

import json
import os
import time

import numpy as np
from absl import app, flags

# tf_keras (Keras 2) as tf.keras, chosen before TensorFlow is imported: TFRS, TFRA and the tf_keras
# optimizers compared here need it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tf_freqsgd
import tensorflow as tf

import bench_flags  # noqa: E402  (beside this script)
import ctr_harness  # noqa: E402  (beside this script)
from tf_freqsgd.data import make_interactions

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

flags.DEFINE_string("ml100k_dir", ctr_harness.ML100K_DIR, "Directory with MovieLens 100K's u.data.")
flags.DEFINE_integer("epochs", 6, "Epochs per run; the best epoch is chosen on validation.")
flags.DEFINE_integer("seeds", 3, "Seeds of the final runs at the chosen rate.")
flags.DEFINE_list("datasets", ["ml-100k", "synthetic"], "Data sets to measure.")
flags.DEFINE_integer("synthetic_ratings", 100_000, "Ratings of the synthetic data set.")
flags.DEFINE_string("output_json", os.path.join(RESULTS_DIR, "choose_estimate.json"), "Output path.")
FLAGS = flags.FLAGS

FREQUENCY_GRID = [1.0, 3.0, 10.0, 30.0, 100.0]
COUNT_GRID = [10.0, 30.0, 100.0, 300.0, 1000.0]

CONFIGURATIONS = {
    "SGD (legacy)": ([3.0, 10.0, 30.0, 100.0, 300.0], lambda lr: tf.keras.optimizers.legacy.SGD(lr)),
    "Adagrad (legacy)": ([0.3, 1.0, 3.0, 10.0, 30.0], lambda lr: tf.keras.optimizers.legacy.Adagrad(lr)),
    "frequency, occurrence": (FREQUENCY_GRID, lambda lr: tf_freqsgd.CounterSGD(lr, estimate="frequency")),
    "frequency, presence": (
        FREQUENCY_GRID, lambda lr: tf_freqsgd.CounterSGD(lr, estimate="frequency", counting="presence")),
    "count, occurrence": (COUNT_GRID, lambda lr: tf_freqsgd.CounterSGD(lr, estimate="count")),
    "count, presence": (COUNT_GRID, lambda lr: tf_freqsgd.CounterSGD(lr, estimate="count", counting="presence")),
}


def load(name):
    if name == "ml-100k":
        raw = ctr_harness.read_ml100k(FLAGS.ml100k_dir)
    else:
        raw = make_interactions(num_ratings=FLAGS.synthetic_ratings, seed=0)
    return None if raw is None else ctr_harness.ctr_split(raw)


def measure(data):
    rows = []
    for name, (grid, make) in CONFIGURATIONS.items():
        started = time.time()
        learning_rate, epoch, validation_auc, _ = ctr_harness.tune(make, grid, data, FLAGS.epochs)
        tests = []
        for seed in range(1, FLAGS.seeds + 1):
            curves = ctr_harness.validation_and_test_auc(lambda: make(learning_rate), data, FLAGS.epochs, seed)
            tests.append(curves["test_auc"][int(np.argmax(curves["validation_auc"]))])
        rows.append({
            "configuration": name, "learning_rate": learning_rate, "tuning_epoch": epoch,
            "tuning_validation_auc": validation_auc, "test_auc_mean": float(np.mean(tests)),
            "test_auc_std": float(np.std(tests)), "test_aucs": tests, "seconds": time.time() - started,
        })
        print(f"  {name}: lr {learning_rate:g}, test AUC {np.mean(tests):.4f} ± {np.std(tests):.4f}", flush=True)
    return rows


def main(argv):
    del argv
    bench_flags.apply_quick({"datasets": ["synthetic"], "synthetic_ratings": 20_000, "epochs": 1, "seeds": 1})
    results = {}
    for dataset in FLAGS.datasets:
        data = load(dataset)
        if data is None:
            print(f"{dataset}: not found, skipped")
            continue
        print(f"{dataset}: {sum(len(p['label']) for p in data)} CTR examples", flush=True)
        results[dataset] = measure(data)
    os.makedirs(os.path.dirname(FLAGS.output_json), exist_ok=True)
    with open(FLAGS.output_json, "w") as f:
        json.dump({"epochs": FLAGS.epochs, "seeds": FLAGS.seeds, "results": results}, f, indent=2)
    for dataset, rows in results.items():
        print(f"\n{dataset} (lr chosen on validation from 5 points; test AUC over {FLAGS.seeds} seeds)\n")
        print("| configuration | learning rate | test AUC |")
        print("|---|---|---|")
        for row in rows:
            print(f"| {row['configuration']} | {row['learning_rate']:g} | "
                  f"{row['test_auc_mean']:.4f} ± {row['test_auc_std']:.4f} |")


if __name__ == "__main__":
    app.run(main)
