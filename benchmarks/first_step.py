"""Time to the first training step in a fresh process, with and without AutoGraph converting tf_keras.

Run: `.venv/bin/python benchmarks/first_step.py` (about a minute; `--quick`: one process per
setting). Each measurement is a fresh Python process that imports tf_freqsgd and TensorFlow, then
builds the logistic matrix factorisation of `tf_freqsgd.models` (943 users, 1,682 items, d = 32),
compiles it with CounterSGD and calls `fit` on one batch of 256. Reported per process:

* `import_seconds`: `import tf_freqsgd, tensorflow` and the model module;
* `first_step_seconds`: from the end of the imports to the end of that first `fit` (model
  building, tracing, AutoGraph conversion and the step): the target is 5 s or less;
* `later_step_ms`: one more `fit` of one batch, for scale.

Settings: `excluded` is tf_freqsgd's default (tf_keras's internals are not converted by AutoGraph,
`tf_freqsgd._compat.exclude_tf_keras_from_autograph`); `converted` opts out with
`TF_FREQSGD_CONVERT_TF_KERAS=1`, which is TensorFlow's own behaviour. Processes alternate between
the settings, so a slow spell of the shared machine hits both. Medians over `--repeats` processes.
Writes `benchmarks/results/first_step.json` and `first_step.png`.
"""

import json
import os
import statistics
import subprocess
import sys
import time

STARTED = time.perf_counter()  # before any heavy import: the child's import time counts from here

from absl import app, flags  # noqa: E402

import bench_flags  # noqa: E402  (beside this script)

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
AUTOGRAPH_ENV = "TF_FREQSGD_CONVERT_TF_KERAS"  # tf_freqsgd._compat.AUTOGRAPH_ENV; the parent imports no TF
SETTINGS = {
    "excluded": ("tf_keras excluded from AutoGraph (default)", "0"),
    "converted": (f"tf_keras converted by AutoGraph ({AUTOGRAPH_ENV}=1)", "1"),
}
TARGET_SECONDS = 5.0
RESULT_PREFIX = "FIRST_STEP_RESULT "

flags.DEFINE_integer("repeats", 3, "Fresh processes per setting.")
flags.DEFINE_integer("batch_size", 256, "Examples in the step.")
flags.DEFINE_string("output_dir", RESULTS_DIR, "Where the JSON and PNG go.")
flags.DEFINE_bool("child", False, "Internal: measure in this process and print one JSON line.")
FLAGS = flags.FLAGS


def measure_in_this_process():
    """The timings of this process, which must not have imported TensorFlow before `STARTED`."""
    import numpy as np

    import tf_freqsgd
    import tensorflow as tf
    from tf_freqsgd.models import matrix_factorization

    imported = time.perf_counter()
    num_users, num_items = 943, 1682
    rng = np.random.default_rng(0)
    features = {"user_id": rng.integers(0, num_users, FLAGS.batch_size),
                "item_id": rng.integers(0, num_items, FLAGS.batch_size)}
    labels = rng.integers(0, 2, FLAGS.batch_size).astype(np.float32)
    model = matrix_factorization(num_users, num_items, dim=32)
    model.compile(optimizer=tf_freqsgd.CounterSGD(1.0), loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    model.fit(features, labels, batch_size=FLAGS.batch_size, epochs=1, verbose=0)
    first = time.perf_counter()
    model.fit(features, labels, batch_size=FLAGS.batch_size, epochs=1, verbose=0)
    return {"import_seconds": imported - STARTED, "first_step_seconds": first - imported,
            "later_step_ms": 1e3 * (time.perf_counter() - first)}


def run_child(setting):
    env = dict(os.environ, **{AUTOGRAPH_ENV: SETTINGS[setting][1]})
    command = [sys.executable, os.path.abspath(__file__), "--child", f"--batch_size={FLAGS.batch_size}"]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"first_step child ({setting}) failed with exit code {completed.returncode}:\n"
                       f"{completed.stderr[-3000:]}")


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 2.8))
    names = list(results)
    for row, name in enumerate(names):
        seconds = results[name]["first_step_seconds"]
        axis.barh(row, statistics.median(seconds), color="#dd8452" if name == "excluded" else "#4c72b0")
        axis.plot(seconds, [row] * len(seconds), "k|", markersize=14)
    axis.axvline(TARGET_SECONDS, color="black", linestyle="--", linewidth=0.8, label=f"target {TARGET_SECONDS:g} s")
    axis.set_yticks(range(len(names)), [results[name]["label"] for name in names])
    axis.set_xlabel("seconds from the end of the imports to the end of the first step (median; ticks: runs)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv):
    del argv
    if FLAGS.child:
        print(RESULT_PREFIX + json.dumps(measure_in_this_process()), flush=True)
        return
    bench_flags.apply_quick({"repeats": 1})
    if FLAGS.repeats < 1:
        raise ValueError(f"--repeats must be at least 1; got {FLAGS.repeats}.")
    runs = {setting: [] for setting in SETTINGS}
    for repeat in range(FLAGS.repeats):
        for setting in SETTINGS:
            runs[setting].append(run_child(setting))
            print(f"{setting} #{repeat + 1}: {runs[setting][-1]['first_step_seconds']:.1f} s to the first step",
                  flush=True)
    results = {}
    for setting, measured in runs.items():
        row = {"label": SETTINGS[setting][0], "env": {AUTOGRAPH_ENV: SETTINGS[setting][1]}}
        for key in ("import_seconds", "first_step_seconds", "later_step_ms"):
            row[key] = [run[key] for run in measured]
            row[f"median_{key}"] = statistics.median(row[key])
        results[setting] = row
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    with open(os.path.join(FLAGS.output_dir, "first_step.json"), "w") as f:
        json.dump({"settings": {"repeats": FLAGS.repeats, "batch_size": FLAGS.batch_size, "cpus": os.cpu_count(),
                                "model": "matrix_factorization(943, 1682, dim=32), CounterSGD, one fit batch"},
                   "target_seconds": TARGET_SECONDS, "results": results}, f, indent=2)
    plot(results, os.path.join(FLAGS.output_dir, "first_step.png"))
    print("\n| setting | imports (s) | first step after imports (s) | a second one-batch fit (ms) |\n|---|---|---|---|")
    for row in results.values():
        print(f"| {row['label']} | {row['median_import_seconds']:.1f} | {row['median_first_step_seconds']:.1f} | "
              f"{row['median_later_step_ms']:.0f} |")


if __name__ == "__main__":
    app.run(main)
