"""Steps per second and bytes sent per step on a cluster of local processes, for CounterSGD, SGD and
Adagrad, under ParameterServerStrategy (1 worker, 2 parameter servers) and MultiWorkerMirroredStrategy
(2 workers).

Run: `make bench-cluster` (`.venv/bin/python benchmarks/cluster.py`; 2.5 minutes on 2 busy cores
here; `--quick`: a 10^5-row table and fewer steps, about a minute). Writes
`benchmarks/results/cluster.json` and `cluster.png`.

The model: `Embedding(rows, dim)` (10^6 x 16) → `GlobalAveragePooling1D` → `Dense(1)`, MSE, trained
by `model.fit` on global batches of 1,024 examples of 8 ids, Zipf-like (exponent 1.05) over the
table. The batches are generated in the input pipeline from the step number: every optimizer and
strategy trains on the same ones, and no data travels with the dataset's graph.

Each strategy gets one cluster of fresh processes on localhost, on which each optimizer's model is
built and trained in turn: under ParameterServerStrategy, two parameter servers and a worker from
`python -m tf_freqsgd.server` (`tf_freqsgd.server.local_cluster`) and a coordinator (this script with
`--role`), the table in 2 shards (`tf_freqsgd.models.distribute`'s `MinSizePartitioner`, the
dense layer whole); under MultiWorkerMirroredStrategy, two processes of this script, each with half of every global batch.
CounterSGD takes its pure-TF path under ParameterServerStrategy (see `NOTES`) and the fused op under
MultiWorkerMirroredStrategy; the traced step is checked to be on the path named.

The optimizers: CounterSGD; tf_keras's `SGD`, the baseline of the bound below, and its legacy `SGD`;
tf_keras's `Adagrad`. See `NOTES` for what sets their traffic and time apart.

Measured after a warm-up epoch, over the timed epochs (each ends once all its steps have run):

* bytes per step: the TCP payload, both directions, of every connection to a task of the cluster
  (those whose local port is a task's port), from the kernel's per-socket counters (`tcp_info`'s
  `bytes_sent` + `bytes_received`, read with `ss`): their growth over the timed steps, divided by
  the steps. Real traffic: gRPC's messages and framing, heartbeats and the coordinator's scheduling
  included. (`/proc/<pid>/io` cannot serve: its rchar/wchar miss send/recv/sendmsg, which gRPC uses.)
* steps/s: the median over timed epochs of the epoch's steps over its wall time;
* touched rows per step: the distinct ids of a global batch (mean over the timed steps).

CounterSGD's traffic is compared with SGD's in the same strategy, per touched row, against a bound
of 8 B (one int64 id) more than SGD's.

On 2 CPU cores shared by every process of the run (and by other jobs on this machine), steps/s are
not a cluster's figure; the bytes per step, and CounterSGD's over SGD's, are what carry over.
"""

import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

# tf_keras (Keras 2) as tf.keras, chosen before TensorFlow is imported; the child processes inherit it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_freqsgd  # noqa: E402
from tf_freqsgd.models import distribute  # noqa: E402
from tf_freqsgd.server import free_ports, local_cluster  # noqa: E402

import bench_flags  # noqa: E402  (beside this script)

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SCRIPT = os.path.abspath(__file__)
LEARNING_RATE = 0.1
BYTES_PER_ID = 8  # the bound: CounterSGD may send one int64 per touched row more than SGD
SEED = 20240
METHOD = ("Bytes: the TCP payload, both directions, of every connection to a task of the cluster (local port = a "
          "task's port), from Linux tcp_info (bytes_sent + bytes_received, read with `ss`): its growth over the "
          "timed steps divided by the steps. Steps/s: the median over timed epochs of steps over wall time, each "
          "epoch ending once all its steps have run. Both after a warm-up epoch; each strategy's optimizers "
          "trained one after another on one cluster. Touched rows: the distinct ids of a global batch.")
# What the figures alone do not say, from tf_keras 2.16's and tf_freqsgd's code (written into the JSON).
NOTES = (
    "tf_keras's SGD and Adagrad sum a sparse gradient's duplicate ids before the update "
    "(`Optimizer._deduplicate_sparse_grad`), on the worker under ParameterServerStrategy: one row and one id per "
    "touched row cross to the parameter servers. So does CounterSGD there, with each row's occurrence count "
    "(float32) beside it, and updates on its pure-TF path (the fused op takes no counts). Legacy SGD scatters the "
    "gradient as it comes: one row per occurrence.",
    "tf_keras 2.16's SGD keeps a momentum slot even at momentum 0 and updates it and the table whole every step: "
    "no traffic (it runs where the table is), but its steps are slow.",
)

# Per strategy, its runs in order: (optimizer, label).
RUNS = {
    "parameter_server": (("counter_sgd", "CounterSGD (pure TF, summed on the worker)"),
                         ("sgd", "SGD (tf_keras)"),
                         ("legacy_sgd", "SGD (tf_keras legacy)"),
                         ("adagrad", "Adagrad (tf_keras)")),
    "multi_worker": (("counter_sgd", "CounterSGD, fused op"),
                     ("sgd", "SGD (tf_keras)"),
                     ("legacy_sgd", "SGD (tf_keras legacy)"),
                     ("adagrad", "Adagrad (tf_keras)")),
}
STRATEGY_LABELS = {"parameter_server": "ParameterServerStrategy, 1 worker, 2 PS",
                   "multi_worker": "MultiWorkerMirroredStrategy, 2 workers"}
# What a run's process must agree on: passed to every child as given here.
MODEL_FLAGS = ("rows", "dim", "batch", "ids_per_example", "zipf_exponent", "steps_per_epoch", "timed_epochs")

flags.DEFINE_integer("rows", 1_000_000, "Rows of the embedding table.")
flags.DEFINE_integer("dim", 16, "Width of the embedding table.")
flags.DEFINE_integer("batch", 1024, "Examples in a global batch.")
flags.DEFINE_integer("ids_per_example", 8, "Ids per example (pooled).")
flags.DEFINE_float("zipf_exponent", 1.05, "Exponent of the ids' Zipf-like distribution.")
flags.DEFINE_integer("steps_per_epoch", 25, "Steps per epoch; the first epoch is the warm-up.")
flags.DEFINE_integer("timed_epochs", 8, "Epochs timed and metered after the warm-up epoch.")
flags.DEFINE_integer("run_timeout", 600, "Seconds a run's processes may take.")
flags.DEFINE_string("output_dir", RESULTS_DIR, "Where the JSON and PNG go.")
flags.DEFINE_enum("role", None, ["parameter_server", "multi_worker"],
                  "Internal: train as this cluster task (TF_CONFIG) and write the measurements to --result.")
flags.DEFINE_string("result", None, "Internal: where a --role run writes its JSON.")
FLAGS = flags.FLAGS


# ---- Measuring. ----


def cluster_ports(cluster):
    """The ports of every task of a cluster dict (job -> "host:port" list)."""
    return sorted({int(address.rsplit(":", 1)[1]) for addresses in cluster.values() for address in addresses})


def tcp_payload_bytes(ports):
    """Bytes carried so far, both directions, by the TCP connections whose local port is one of
    `ports`: every connection to a task counted once, at the task's end (Linux `tcp_info` via `ss`)."""
    selector = " or ".join(f"sport = :{port}" for port in ports)
    listing = subprocess.run(["ss", "-tinH", f"( {selector} )"], capture_output=True, text=True, check=True).stdout
    return sum(int(count) for count in re.findall(r"\bbytes_(?:sent|received):(\d+)", listing))


@tf.autograph.experimental.do_not_convert  # Python arithmetic on the table's size, inside a traced dataset function
def zipf_multiplier(rows):
    """An odd multiplier coprime with `rows`: `rank * m mod rows` spreads the popular ranks over the
    whole table (and so over both shards) one-to-one."""
    multiplier = 2654435761
    while math.gcd(multiplier, rows) != 1:
        multiplier += 2
    return multiplier


def global_batch(step):
    """The `step`-th global batch, from the step number alone: ids `(batch, ids_per_example)` whose
    ranks follow a continuous power law (exponent `zipf_exponent`) over `rows`, spread over the
    table by a fixed bijection, and normal labels."""
    seed = tf.stack([tf.constant(SEED, tf.int64), tf.cast(step, tf.int64)])
    uniform = tf.random.stateless_uniform([FLAGS.batch, FLAGS.ids_per_example], seed, dtype=tf.float64)
    # The inverse CDF of a density ∝ x^-s on [1, rows + 1).
    power = 1.0 - FLAGS.zipf_exponent
    ranks = tf.math.floor((1.0 + uniform * ((FLAGS.rows + 1.0) ** power - 1.0)) ** (1.0 / power)) - 1.0
    ranks = tf.clip_by_value(tf.cast(ranks, tf.int64), 0, FLAGS.rows - 1)
    ids = ranks * zipf_multiplier(FLAGS.rows) % FLAGS.rows
    labels = tf.random.stateless_normal([FLAGS.batch, 1], seed + 1)
    return ids, labels


def dataset():
    return tf.data.Dataset.range(1 << 40).map(global_batch).prefetch(2)


def build_model(strategy, optimizer):
    optimizers = {
        "counter_sgd": lambda: tf_freqsgd.CounterSGD(LEARNING_RATE),
        "sgd": lambda: tf.keras.optimizers.SGD(LEARNING_RATE),
        "legacy_sgd": lambda: tf.keras.optimizers.legacy.SGD(LEARNING_RATE),
        "adagrad": lambda: tf.keras.optimizers.Adagrad(LEARNING_RATE),
    }
    with strategy.scope():
        ids = tf.keras.Input((FLAGS.ids_per_example,), dtype=tf.int64)
        rows = tf.keras.layers.Embedding(FLAGS.rows, FLAGS.dim, name="items")(ids)
        score = tf.keras.layers.Dense(1)(tf.keras.layers.GlobalAveragePooling1D()(rows))
        model = tf.keras.Model(ids, score)
        model.compile(optimizers[optimizer](), "mse")
    return model


def traced_op_types(model):
    """The op types of the traced training step, those of the functions it calls included."""
    # Private: a tf.function's traces; tf_keras keeps the step's tf.function as train_tf_function.
    nodes = []
    for function in model.train_tf_function._list_all_concrete_functions():
        graph_def = function.graph.as_graph_def()
        nodes += list(graph_def.node) + [node for f in graph_def.library.function for node in f.node_def]
    return {node.op for node in nodes}


def metered_fit(strategy, model, ports):
    """Trains `model` for the warm-up epoch and the timed ones; returns (seconds, bytes carried so
    far) at the end of each epoch, once all its steps have run."""
    marks = []

    class Meter(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if FLAGS.role == "parameter_server":
                # The strategy's coordinator (one per strategy): returns once every scheduled step has run.
                tf.distribute.experimental.coordinator.ClusterCoordinator(strategy).join()
            marks.append((time.perf_counter(), tcp_payload_bytes(ports)))

    if FLAGS.role == "parameter_server":
        data = tf.keras.utils.experimental.DatasetCreator(lambda _: dataset())
    else:
        options = tf.data.Options()
        # Each worker keeps its half of every global batch.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        data = dataset().with_options(options)
    model.fit(data, epochs=1 + FLAGS.timed_epochs, steps_per_epoch=FLAGS.steps_per_epoch, callbacks=[Meter()],
              verbose=0)
    return marks


def train_and_measure():
    """This process's part of a strategy's runs (the coordinator, or one of the two workers): each
    optimizer's model trained in turn on the same cluster; the coordinator and worker 0 write the
    measurements to `--result`."""
    tf_config = json.loads(os.environ["TF_CONFIG"])
    strategy = distribute.make_strategy(FLAGS.role)
    ports = cluster_ports(tf_config["cluster"])
    steps = FLAGS.timed_epochs * FLAGS.steps_per_epoch
    touched = [np.unique(global_batch(step)[0].numpy()).size
               for step in range(FLAGS.steps_per_epoch, FLAGS.steps_per_epoch + steps)]
    runs = []
    for optimizer, label in RUNS[FLAGS.role]:
        model = build_model(strategy, optimizer)
        marks = metered_fit(strategy, model, ports)
        fused = any("CounterSGD" in op for op in traced_op_types(model))
        if optimizer == "counter_sgd" and fused != ("fused op" in label):
            raise SystemExit(f"{label}: the traced step {'uses' if fused else 'lacks'} the fused op.")
        epoch_rates = [FLAGS.steps_per_epoch / (end - start) for (start, _), (end, _) in zip(marks, marks[1:])]
        runs.append({"strategy": FLAGS.role, "optimizer": optimizer, "label": label,
                     "steps": steps, "seconds": marks[-1][0] - marks[0][0],
                     "steps_per_second": statistics.median(epoch_rates), "epoch_steps_per_second": epoch_rates,
                     "bytes_per_step": (marks[-1][1] - marks[0][1]) / steps,
                     "touched_rows_per_step": statistics.mean(touched), "fused_op_traced": fused,
                     "table_shards": len([v for v in model.trainable_variables if "items" in v.name])})
    if tf_config["task"]["type"] == "chief" or tf_config["task"]["index"] == 0:
        with open(FLAGS.result, "w") as f:
            json.dump(runs, f)


# ---- Running. ----


def finish(processes):
    """Waits for `processes` (bounded by --run_timeout); raises with the output of one that failed."""
    try:
        for process in processes:
            out, _ = process.communicate(timeout=FLAGS.run_timeout)
            if process.returncode:
                raise RuntimeError(f"a run's process exited with status {process.returncode}:\n{out[-3000:]}")
    finally:
        for process in processes:
            process.kill()  # their own handles: a no-op once they have exited


def start(strategy, result, tf_config):
    command = [sys.executable, SCRIPT, f"--role={strategy}", f"--result={result}",
               *(f"--{name}={FLAGS[name].value}" for name in MODEL_FLAGS)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(strategy, result):
    """A strategy's runs on a cluster of fresh processes; returns their measurements."""
    if strategy == "parameter_server":
        with local_cluster(num_ps=2, num_workers=1) as cluster:
            finish([start(strategy, result, {"cluster": cluster, "task": {"type": "chief", "index": 0}})])
    else:
        cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
        finish([start(strategy, result, {"cluster": cluster, "task": {"type": "worker", "index": index}})
                for index in range(2)])
    with open(result) as f:
        return json.load(f)


def compare_with_sgd(runs):
    """Per run, its bytes per step over SGD's in the same strategy, in all and per touched row."""
    sgd = {row["strategy"]: row for row in runs if row["optimizer"] == "sgd"}
    for row in runs:
        extra = row["bytes_per_step"] - sgd[row["strategy"]]["bytes_per_step"]
        row["bytes_over_sgd_per_step"] = extra
        row["bytes_over_sgd_per_touched_row"] = extra / row["touched_rows_per_step"]


def plot(runs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (traffic, speed) = plt.subplots(1, 2, figsize=(14, 4.2), sharey=True,
                                            gridspec_kw={"width_ratios": [3, 2]})
    names = [f"{'PS' if row['strategy'] == 'parameter_server' else 'MWMS'}: {row['label']}" for row in runs]
    colours = ["#dd8452" if row["optimizer"] == "counter_sgd" else "#4c72b0" for row in runs]
    kib = [row["bytes_per_step"] / 1024 for row in runs]
    traffic.barh(names, kib, color=colours)
    traffic.set_xlim(0, 1.45 * max(kib))  # room for the labels
    traffic.set_xlabel("KiB sent a step (TCP payload, both directions)")
    for index, row in enumerate(runs):
        if row["optimizer"] != "sgd":
            # (`or 0.0`: no "-0.0")
            traffic.annotate(f"{round(row['bytes_over_sgd_per_touched_row'], 1) or 0.0:+.1f} B/touched row over SGD",
                             (kib[index], index), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    speed.barh(names, [row["steps_per_second"] for row in runs], color=colours)
    speed.set_xlabel("steps/s (localhost, 2 shared cores: not a cluster's)")
    traffic.invert_yaxis()
    figure.suptitle(f"Embedding {FLAGS.rows:,} x {FLAGS.dim}, global batch {FLAGS.batch:,} x {FLAGS.ids_per_example} "
                    "Zipf-like ids")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv):
    del argv
    if FLAGS.role:
        train_and_measure()
        return
    bench_flags.apply_quick({"rows": 100_000, "steps_per_epoch": 10, "timed_epochs": 3})
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for strategy in RUNS:
            runs += run(strategy, os.path.join(scratch, f"{strategy}.json"))
            for row in runs:
                if row["strategy"] == strategy:
                    print(f"{STRATEGY_LABELS[strategy]}, {row['label']}: {row['steps_per_second']:.2f} steps/s, "
                          f"{row['bytes_per_step']:,.0f} B a step", flush=True)
    compare_with_sgd(runs)
    settings = {name: FLAGS[name].value for name in MODEL_FLAGS}
    settings.update(cpus=os.cpu_count(), learning_rate=LEARNING_RATE, strategies=STRATEGY_LABELS,
                    occurrences_per_step=FLAGS.batch * FLAGS.ids_per_example,
                    model="Embedding → GlobalAveragePooling1D → Dense(1), MSE, model.fit")
    results = {
        "settings": settings,
        "bound_bytes_per_touched_row": BYTES_PER_ID,
        "method": METHOD,
        "notes": NOTES,
        "caveat": f"Every process of a run on localhost, sharing {os.cpu_count()} CPU cores (and the machine with "
                  "other jobs): steps/s are not a cluster's figure; the bytes per step, and CounterSGD's over "
                  "SGD's per touched row, carry over.",
        "runs": runs,
    }
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    with open(os.path.join(FLAGS.output_dir, "cluster.json"), "w") as f:
        json.dump(results, f, indent=2)
    plot(runs, os.path.join(FLAGS.output_dir, "cluster.png"))
    print("\n| strategy | optimizer | steps/s | bytes/step | touched rows/step | over SGD per touched row |")
    print("|---|---|---|---|---|---|")
    for row in runs:
        print(f"| {row['strategy']} | {row['label']} | {row['steps_per_second']:.2f} | {row['bytes_per_step']:,.0f} | "
              f"{row['touched_rows_per_step']:,.0f} | {row['bytes_over_sgd_per_touched_row']:+.2f} B |")


if __name__ == "__main__":
    app.run(main)
