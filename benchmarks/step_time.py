"""Time per training step on one large embedding table, as a ratio to legacy SGD in the same run.

Run: `make bench-speed` (`.venv/bin/python benchmarks/step_time.py`; `--quick`: one 100K x 64
table, few blocks, under a minute). For each table size and optimizer: a training step is an
embedding lookup of a batch of Zipf-distributed ids, a loss, its gradient (`IndexedSlices`, one
row per occurrence) and the optimizer's update, in one `tf.function`; the update alone is
`apply_gradients` on a precomputed gradient. Each figure is the median over blocks of steps after
a warm-up; the sparse optimizers' blocks are interleaved, and the optimizers that update the whole
table every step (tf_keras SGD and Adam) are timed alone afterwards. Writes
`benchmarks/results/step_time.json`, `step_time.png` and a Markdown table.
"""

import gc
import json
import os
import statistics
import time

from absl import app, flags

# tf_keras (Keras 2) as tf.keras, chosen before TensorFlow is imported: TFRS, TFRA and the tf_keras
# optimizers compared here need it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tf_freqsgd
import numpy as np
import tensorflow as tf

from tf_freqsgd import ops
from tf_freqsgd.optimizers import step_checks

import bench_flags  # noqa: E402  (beside this script)

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

flags.DEFINE_list("tables", ["1000000x64", "10000000x16"], "Table sizes, ROWSxDIM.")
flags.DEFINE_integer("batch", 8192, "Ids per step.")
flags.DEFINE_float("zipf_exponent", 1.05, "Exponent of the ids' Zipf distribution.")
flags.DEFINE_integer("blocks", 15, "Timed blocks; the median block is reported.")
flags.DEFINE_integer("steps_per_block", 10, "Steps per timed block.")
flags.DEFINE_integer("whole_table_blocks", 3, "Timed blocks of 2 steps for optimizers that update the whole table.")
flags.DEFINE_list("breakdown_tables", ["10000000x16", "100000x16"], "Tables (ROWSxDIM) on which CounterSGD's fused "
                  "update is timed in parts beside legacy SGD's (`breakdown`); empty: none.")
flags.DEFINE_string("output_dir", RESULTS_DIR, "Where the JSON and PNG go.")
FLAGS = flags.FLAGS


def optimizers():
    """name: (the TF_FREQSGD_OPS path its update is traced on or None, whether it updates the whole
    table every step, and its constructor)."""
    return {
        "SGD (legacy)": (None, False, lambda: tf.keras.optimizers.legacy.SGD(0.1)),
        "SGD (tf_keras)": (None, True, lambda: tf.keras.optimizers.SGD(0.1)),
        "Adagrad (legacy)": (None, False, lambda: tf.keras.optimizers.legacy.Adagrad(0.1)),
        "Adagrad (tf_keras)": (None, False, lambda: tf.keras.optimizers.Adagrad(0.1)),
        "Adam (tf_keras)": (None, True, lambda: tf.keras.optimizers.Adam(0.1)),
        "CounterSGD, fused op": ("custom", False, lambda: tf_freqsgd.CounterSGD(0.1)),
        "CounterSGD, pure TF": ("tf", False, lambda: tf_freqsgd.CounterSGD(0.1)),
        "RowwiseAdagradCounter, fused op": ("custom", False, lambda: tf_freqsgd.RowwiseAdagradCounter(0.1)),
        "RowwiseAdagradCounter, pure TF": ("tf", False, lambda: tf_freqsgd.RowwiseAdagradCounter(0.1)),
    }


def zipf_batches(rows, count, rng):
    """Ids drawn ∝ 1/rank^a over a random permutation of the rows."""
    ranks = np.arange(1, rows + 1, dtype=np.float64)
    weights = ranks ** -FLAGS.zipf_exponent
    cumulative = np.cumsum(weights / weights.sum())
    permutation = rng.permutation(rows)
    return [tf.constant(permutation[np.minimum(np.searchsorted(cumulative, rng.random(FLAGS.batch)), rows - 1)])
            for _ in range(count)]


def timed_functions(rows, dim, make_optimizer, targets):
    """A training step and an update alone for one optimizer on its own table, both traced and
    warmed up (the optimizer picks its path at trace time)."""
    table = tf.Variable(tf.random.normal([rows, dim], stddev=0.01), name="table")
    optimizer = make_optimizer()
    values = tf.random.normal([FLAGS.batch, dim])

    @tf.function
    def train_step(ids):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.gather(table, ids) - targets))
        optimizer.apply_gradients([(tape.gradient(loss, table), table)])

    @tf.function
    def update_only(ids):
        optimizer.apply_gradients([(tf.IndexedSlices(values, ids, tf.constant([rows, dim])), table)])

    return {"step": train_step, "update": update_only, "optimizer": optimizer}


def traced_op_types(function, ids):
    """The op types of a traced tf.function, those of the functions it calls included."""
    graph_def = function.get_concrete_function(ids).graph.as_graph_def()
    nodes = list(graph_def.node) + [node for f in graph_def.library.function for node in f.node_def]
    return {node.op for node in nodes}


def prepared_run(name, path, make, rows, dim, targets, batches):
    """The traced, warmed-up step and update of one optimizer, checked to be on `path`."""
    run = timed_functions(rows, dim, make, targets)
    # The optimizer picks the fused or pure-TF update when its step is traced: here.
    os.environ[ops.PATH_ENV] = path or "auto"
    for kind in ("step", "update"):
        for ids in batches[:3]:
            run[kind](ids)
        fused = any("Counter" in op for op in traced_op_types(run[kind], batches[0]))
        if fused != (path == "custom"):
            raise SystemExit(f"{name}: the traced {kind} {'uses' if fused else 'lacks'} the fused op.")
    # After the warm-up: optimizers make their slots on the first step.
    run["state_bytes_per_row"] = tf_freqsgd.optimizer_state_bytes(run["optimizer"], rows=rows) / rows
    return run


def interleaved_medians(functions, batches, blocks, steps_per_block):
    """Per key of `functions` (traced functions of a batch of ids), the median over blocks of ms per
    call. Blocks are interleaved across the functions, so a slow spell of the machine hits them all
    alike."""
    times = {key: [] for key in functions}
    for block in range(blocks):
        for key, block_times in times.items():
            started = time.perf_counter()
            for i in range(steps_per_block):
                functions[key](batches[(block * steps_per_block + i) % len(batches)])
            block_times.append((time.perf_counter() - started) / steps_per_block)
    return {key: 1e3 * statistics.median(block_times) for key, block_times in times.items()}


def median_milliseconds(runs, batches, blocks, steps_per_block):
    """Per run, the median ms per step and per update (`interleaved_medians`)."""
    functions = {(name, kind): run[kind] for name, run in runs.items() for kind in ("step", "update")}
    medians = interleaved_medians(functions, batches, blocks, steps_per_block)
    return {name: {"step_ms": medians[name, "step"], "update_ms": medians[name, "update"],
                   "state_bytes_per_row": run["state_bytes_per_row"]} for name, run in runs.items()}


def measure_table(rows, dim, batches):
    """The sparse optimizers timed together, interleaved; then each whole-table optimizer alone,
    with fewer steps: its table-sized temporaries (hundreds of MB a step) would slow the others."""
    targets = tf.random.normal([FLAGS.batch, dim])
    chosen = optimizers()
    sparse = {name: prepared_run(name, path, make, rows, dim, targets, batches)
              for name, (path, whole_table, make) in chosen.items() if not whole_table}
    results = median_milliseconds(sparse, batches, FLAGS.blocks, FLAGS.steps_per_block)
    del sparse
    for name, (path, whole_table, make) in chosen.items():
        if whole_table:
            gc.collect()
            run = {name: prepared_run(name, path, make, rows, dim, targets, batches)}
            results.update(median_milliseconds(run, batches, FLAGS.whole_table_blocks, 2))
            del run
    gc.collect()
    return {name: results[name] for name in chosen}


def breakdown_parts(rows, dim):
    """CounterSGD's fused update and legacy SGD's on their own tables, whole and in parts, each a
    traced function of the batch's ids: the scatter that is all of legacy SGD's update, the fused
    op alone (grouping the ids, the counters, the rows), and the step's checks alone (ids in range,
    finite values); and the cost of calling a traced function, which each of them includes."""
    lr = 0.1
    values = tf.random.normal([FLAGS.batch, dim])
    sgd_table = tf.Variable(tf.random.normal([rows, dim], stddev=0.01), name="sgd_table")
    counter_table = tf.Variable(tf.random.normal([rows, dim], stddev=0.01), name="counter_table")
    sgd = tf.keras.optimizers.legacy.SGD(lr)
    counter_sgd = tf_freqsgd.CounterSGD(lr)
    os.environ[ops.PATH_ENV] = "custom"
    fused = ops.fused_ops()

    def gradient(ids):
        return tf.IndexedSlices(values, ids, tf.constant([rows, dim]))

    @tf.function
    def sgd_update(ids):
        sgd.apply_gradients([(gradient(ids), sgd_table)])

    @tf.function
    def scatter_alone(ids):
        tf.raw_ops.ResourceScatterAdd(resource=sgd_table.handle, indices=ids, updates=-lr * values)

    @tf.function
    def counter_sgd_update(ids):
        counter_sgd.apply_gradients([(gradient(ids), counter_table)])

    counter_sgd.build([counter_table])
    counter = counter_sgd.row_state(counter_table)["counter"]
    attributes = counter_sgd.fused_attributes(counter_table)

    @tf.function
    def fused_op_alone(ids):
        fused.resource_sparse_apply_counter_sgd(counter_table.handle, counter.handle, lr, counter_sgd.step, values, ids,
                                                **attributes)

    @tf.function
    def checks_alone(ids):
        zero = tf.cast(counter_sgd.applied_steps < 0, tf.float32)
        required, finite = step_checks.step_conditions(counter_sgd.name, [(gradient(ids), counter_table)], zero)
        with tf.control_dependencies(step_checks.assertions(required + finite)):
            return tf.identity(zero)

    @tf.function
    def nothing(ids):
        return tf.identity(ids[0])

    return {"SGD (legacy): update": sgd_update, "SGD (legacy): its scatter alone": scatter_alone,
            "CounterSGD, fused op: update": counter_sgd_update, "CounterSGD: the fused op alone": fused_op_alone,
            "CounterSGD: the step checks alone": checks_alone, "a traced call that does nothing": nothing}


def measure_breakdown(rows, dim, batches):
    """The median ms of each of `breakdown_parts`, in interleaved blocks after a warm-up."""
    parts = breakdown_parts(rows, dim)
    for function in parts.values():
        for ids in batches[:3]:
            function(ids)
    medians = interleaved_medians(parts, batches, FLAGS.blocks, FLAGS.steps_per_block)
    baseline = medians["SGD (legacy): update"]
    return {name: {"ms": ms, "ratio_to_sgd_update": ms / baseline} for name, ms in medians.items()}


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for axis, (table, rows) in zip(axes[0], results.items()):
        names = list(rows)
        ratios = [rows[name]["step_ratio"] for name in names]
        axis.barh(names, ratios, color=["#4c72b0" if "Counter" not in n else "#dd8452" for n in names])
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel("training-step time / legacy SGD's (log scale)")
        axis.set_title(f"{table}, {FLAGS.batch} Zipf ids a step")
        axis.invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv):
    del argv
    bench_flags.apply_quick({"tables": ["100000x64"], "blocks": 3, "steps_per_block": 5, "whole_table_blocks": 1,
                             "breakdown_tables": ["100000x16"]})
    if not ops.custom_op_available():
        raise SystemExit("The fused op is not built: run `make install` first.")
    rng = np.random.default_rng(0)
    results = {}
    for spec in FLAGS.tables:
        rows, dim = map(int, spec.lower().split("x"))
        table_results = measure_table(rows, dim, zipf_batches(rows, 20, rng))
        for name, row in table_results.items():
            print(f"{spec} {name}: {row['step_ms']:.2f} ms a step, {row['update_ms']:.2f} ms the update", flush=True)
        baseline = table_results["SGD (legacy)"]
        for row in table_results.values():
            row["step_ratio"] = row["step_ms"] / baseline["step_ms"]
            row["update_ratio"] = row["update_ms"] / baseline["update_ms"]
        results[spec] = table_results
    breakdown = {}
    for spec in FLAGS.breakdown_tables:
        rows, dim = map(int, spec.lower().split("x"))
        breakdown[spec] = measure_breakdown(rows, dim, zipf_batches(rows, 20, rng))
        gc.collect()
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    with open(os.path.join(FLAGS.output_dir, "step_time.json"), "w") as f:
        json.dump({"batch": FLAGS.batch, "zipf_exponent": FLAGS.zipf_exponent, "results": results,
                   "breakdown": breakdown}, f, indent=2)
    plot(results, os.path.join(FLAGS.output_dir, "step_time.png"))
    for spec, table_results in results.items():
        print(f"\n{spec}, {FLAGS.batch} Zipf ids a step (ratios to legacy SGD in the same run)\n")
        print("| optimizer | step (ms) | step / SGD | update (ms) | update / SGD | state bytes/row |")
        print("|---|---|---|---|---|---|")
        for name, row in table_results.items():
            print(f"| {name} | {row['step_ms']:.2f} | {row['step_ratio']:.2f} | {row['update_ms']:.2f} | "
                  f"{row['update_ratio']:.2f} | {row['state_bytes_per_row']:g} |")
        for optimizer in ("CounterSGD", "RowwiseAdagradCounter"):
            fused, pure = table_results[f"{optimizer}, fused op"], table_results[f"{optimizer}, pure TF"]
            print(f"\n{optimizer}: the fused op's update alone is {pure['update_ms'] / fused['update_ms']:.2f}x "
                  "as fast as the pure-TF path's")
    for spec, parts in breakdown.items():
        print(f"\nThe update in parts, {spec}, {FLAGS.batch} Zipf ids a step\n")
        print("| part | ms | / legacy SGD's update |")
        print("|---|---|---|")
        for name, part in parts.items():
            print(f"| {name} | {part['ms']:.3f} | {part['ratio_to_sgd_update']:.2f} |")


if __name__ == "__main__":
    app.run(main)
