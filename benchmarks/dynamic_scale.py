"""Step time and peak memory of a TFRA dynamic embedding of 10^5 to 10^7 rows, per optimizer.

Run: `make bench-dynamic` (`.venv/bin/python benchmarks/dynamic_scale.py`; about 10 minutes;
`--quick`: N = 10^5, SGD and CounterSGD, few blocks, under a minute). The
model is CTR-like: `ids_per_example` int64 ids an example -> `de.keras.layers.Embedding(dim)` ->
mean pool -> Dense(1), logistic loss on random labels. A step is `batch` ids (`batch /
ids_per_example` examples) whose ranks are drawn ∝ 1/rank^zipf_exponent over [0, N); splitmix64
(a bijection on 64 bits) maps each rank to an id spread over the whole int64 range, negatives
included.

Each (N, optimizer) runs in a fresh subprocess, so its peak resident memory (VmHWM) is its own.
There, a `tf.function` step (GradientTape, `apply_gradients`) is traced and run once, which makes
the optimizer's tables; then the ids of all N ranks are upserted, in chunks, into the embedding
and into every optimizer table with the value a first lookup gives them (embedding: a
RandomNormal draw; both Adagrads' accumulators 0.1; Adam's moments 0; the counters 0: not yet
counted), so every table holds N rows while it is timed. Memory is read then. The step is timed
in blocks after a warm-up, alternating with a legacy-SGD step on the same model and tables and,
at the largest N, with the same optimizer on its own table of the smallest N: the ratio
to SGD and the growth from the smallest N are medians over blocks of the ratio of neighbouring
blocks, which a slow spell of a shared machine hits on both sides. (Median step times of
different processes carry that machine's drift, ±30% here.) TensorFlow runs on one thread
(`--threads`): such a step keeps its pace better when other work takes a core.

State bytes a row count the values of the optimizer's hash tables (rows x width x 4 bytes, over
the embedding's rows); each table also stores an 8-byte key a row, not counted. Peak memory
includes TensorFlow itself, the fill's chunk (`fill_chunk` rows) and the tables' rehashing as they
grow, together. Writes `benchmarks/results/dynamic_scale.json`, `dynamic_scale.png` and prints
Markdown tables.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

# tf_keras (Keras 2) as tf.keras, chosen before TensorFlow is imported: TFRS, TFRA and the tf_keras
# optimizers compared here need it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tf_freqsgd  # noqa: E402
import numpy as np
import tensorflow as tf
from tensorflow_recommenders_addons import dynamic_embedding as de

import bench_flags  # noqa: E402  (beside this script)
from tf_freqsgd import _tfra_internals  # noqa: E402  (TFRA's private slot list, read in one place)
from tf_freqsgd.optimizers.row_storage import own_tables  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BASELINE = "sgd"

flags.DEFINE_list("sizes", ["100000", "1000000", "10000000"], "Distinct ids (table rows) N.")
flags.DEFINE_list("optimizers", ["sgd", "counter_sgd", "rowwise_adagrad_counter", "adagrad", "adam"],
                  "Optimizers to run, of: sgd (the baseline), counter_sgd, rowwise_adagrad_counter, adagrad, adam.")
flags.DEFINE_integer("dim", 32, "Embedding width.")
flags.DEFINE_integer("batch", 8192, "Ids a step.")
flags.DEFINE_integer("ids_per_example", 4, "Ids an example; batch / ids_per_example examples a step.")
flags.DEFINE_float("zipf_exponent", 1.05, "Exponent of the ranks' Zipf distribution.")
flags.DEFINE_float("learning_rate", 0.05, "Every optimizer's learning rate.")
flags.DEFINE_integer("warmup_steps", 5, "Untimed steps after the fill.")
flags.DEFINE_integer("blocks", 15, "Timed blocks of each step, alternating.")
flags.DEFINE_integer("steps_per_block", 5, "Steps a timed block.")
flags.DEFINE_integer("threads", 1, "TensorFlow's intra- and inter-op threads; 0 for its default (all cores).")
flags.DEFINE_integer("fill_chunk", 1 << 18, "Ids upserted at a time while filling the tables.")
flags.DEFINE_integer("profile_steps", 20, "Steps traced by TensorFlow's profiler after the timing, for where a "
                     "step's time goes (0: none).")
flags.DEFINE_string("output_dir", RESULTS_DIR, "Where the JSON and PNG go.")
flags.DEFINE_string("one_config", None, "Internal: 'N,optimizer[,N to time the growth from]' to measure "
                    "in this process; prints one JSON line.")
FLAGS = flags.FLAGS

# Forwarded to each config's subprocess.
CONFIG_FLAGS = ("dim", "batch", "ids_per_example", "zipf_exponent", "learning_rate", "warmup_steps",
                "blocks", "steps_per_block", "threads", "fill_chunk", "profile_steps")
RESULT_PREFIX = "DYNAMIC_SCALE_RESULT "


LABELS = {
    "sgd": "SGD (legacy, TFRA)",
    "counter_sgd": "CounterSGD",
    "rowwise_adagrad_counter": "RowwiseAdagradCounter",
    "adagrad": "Adagrad (TFRA)",
    "adam": "Adam (TFRA)",
}


def make_optimizer(key):
    """TFRA's own optimizers are wrapped explicitly; ours wrap themselves when they first see a
    dynamic table."""
    rate = FLAGS.learning_rate
    return {
        "sgd": lambda: de.DynamicEmbeddingOptimizer(tf.keras.optimizers.legacy.SGD(rate)),
        "counter_sgd": lambda: tf_freqsgd.CounterSGD(rate),
        "rowwise_adagrad_counter": lambda: tf_freqsgd.RowwiseAdagradCounter(rate),
        "adagrad": lambda: de.DynamicEmbeddingOptimizer(tf.keras.optimizers.Adagrad(rate)),
        "adam": lambda: de.DynamicEmbeddingOptimizer(tf.keras.optimizers.Adam(rate)),
    }[key]()


# ---- One (N, optimizer) configuration, in its own process. ----


def splitmix64(ranks):
    """splitmix64's output mix of rank + the golden-ratio increment, as int64: distinct ranks give
    distinct ids (the mix is a bijection), spread over the whole int64 range."""
    with np.errstate(over="ignore"):
        z = ranks.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))).view(np.int64)


def zipf_batches(rows, count, rng):
    """`count` batches of ids [examples, ids_per_example], ranks drawn ∝ 1/rank^a over [0, rows)."""
    weights = np.arange(1, rows + 1, dtype=np.float64) ** -FLAGS.zipf_exponent
    cumulative = np.cumsum(weights / weights.sum())
    shape = (FLAGS.batch // FLAGS.ids_per_example, FLAGS.ids_per_example)
    ranks = [np.minimum(np.searchsorted(cumulative, rng.random(shape)), rows - 1) for _ in range(count)]
    return [tf.constant(splitmix64(r)) for r in ranks]


def ctr_model(name):
    ids = tf.keras.Input([FLAGS.ids_per_example], dtype=tf.int64)
    # A unique name: TFRA layers of the same name in one process share their tables.
    embedding = de.keras.layers.Embedding(FLAGS.dim, key_dtype=tf.int64, name=name)
    pooled = tf.reduce_mean(embedding(ids), axis=1)
    return tf.keras.Model(ids, tf.keras.layers.Dense(1)(pooled)), embedding


def train_step_function(model, optimizer):
    @tf.function
    def train_step(ids, labels):
        with tf.GradientTape() as tape:
            logits = model(ids, training=True)
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return train_step


def optimizer_tables(optimizer, embedding):
    """The hash tables the optimizer keeps for the embedding: the slots TFRA made (recorded on the
    layer's trainable, as TFRA's own optimizer code reads them) and tf_freqsgd's state tables."""
    tables = _tfra_internals.slot_tables(embedding.shadow)
    for _, slots in getattr(optimizer, "dynamic_tables", {}).values():
        tables += own_tables(slots)
    return tables


def fill(tables, keys):
    """Upserts every key into every table with the value a first lookup gives it (its default).
    Chunk by chunk across the tables, as training grows them: together, rehashing at once."""
    for start in range(0, len(keys), FLAGS.fill_chunk):
        chunk = tf.constant(keys[start:start + FLAGS.fill_chunk])
        for table in tables:
            table.upsert(chunk, table.lookup(chunk))


def block_times_ms(train_steps, labels):
    """{name: ms a step in each block} of the `(train_step, batches)` given by name, after a
    warm-up. Blocks alternate between the steps, so a slow spell of a shared machine hits both
    sides of a ratio of neighbouring blocks alike."""
    for train_step, batches in train_steps.values():
        for i in range(FLAGS.warmup_steps):
            train_step(batches[i % len(batches)], labels)
    times = {name: [] for name in train_steps}
    for block in range(FLAGS.blocks):
        for name, (train_step, batches) in train_steps.items():
            started = time.perf_counter()
            for i in range(FLAGS.steps_per_block):
                loss = train_step(batches[(block * FLAGS.steps_per_block + i) % len(batches)], labels)
            loss.numpy()  # the block ends when its last step has
            times[name].append(1e3 * (time.perf_counter() - started) / FLAGS.steps_per_block)
    return times


def table_of_op(graph, tables):
    """``{op name: (table label, "lookup" or "upsert")}`` of the hash-table finds and inserts in
    ``graph``, by the table (``[(label, de.Variable)]``) whose handle the op takes."""
    handles = {}
    for external, internal in graph.captures:
        for label, table in tables:
            if any(external is shard.resource_handle for shard in table.tables):
                handles[id(internal)] = label
    return {op.name: (handles[id(op.inputs[0])], "upsert" if "Insert" in op.type else "lookup")
            for op in graph.get_operations()
            if op.type.startswith("TFRA>") and op.inputs and id(op.inputs[0]) in handles}


def op_profile_ms(train_step, batches, labels, tables):
    """Where a step's op time goes, ms a step over `profile_steps` steps traced by TensorFlow's
    profiler (one thread: the ops run one at a time): the hash-table lookups and upserts by table,
    the embedding's default values (TFRA draws its initializer for every id looked up), the other
    ops, and all ops together (the executor's own time between ops is not in it)."""
    import glob
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    table_ops = table_of_op(train_step.get_concrete_function(batches[0], labels).graph, tables)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for i in range(FLAGS.profile_steps):
            loss = train_step(batches[i % len(batches)], labels)
        loss.numpy()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as f:
            space.ParseFromString(f.read())
    parts = {}
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue  # the host's lines: the function call, which holds the ops' time
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_name, _, op_type = name.partition(":")
                if not op_type or "::" in name:
                    continue  # the executor's own events, which hold the ops' time
                if op_name in table_ops:
                    part = " ".join(table_ops[op_name])
                elif op_type.startswith("StatelessRandomNormal"):
                    part = "embedding default values"
                else:
                    part = "other ops"
                parts[part] = parts.get(part, 0.0) + event.duration_ps * 1e-9 / FLAGS.profile_steps
    return {**parts, "all ops": sum(parts.values())}


def memory_mib():
    """{'VmHWM': peak, 'VmRSS': current} resident memory of this process, MiB."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmHWM", "VmRSS")}


def median_ratio(numerators, denominators):
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def filled_model(name, optimizer_key, rows, batches, labels):
    """A model and its optimizer, one step run (which makes the optimizer's tables), then every
    table filled with the ids of all `rows` ranks."""
    model, embedding = ctr_model(name)
    optimizer = make_optimizer(optimizer_key)
    if hasattr(optimizer, "build"):
        # With its variables made here rather than in the first call, the step is traced once,
        # not twice: 7 s less for ours. (Legacy SGD has no build, and one cheap variable.)
        optimizer.build(model.trainable_variables)
    train_step = train_step_function(model, optimizer)
    train_step(batches[0], labels)
    state = optimizer_tables(optimizer, embedding)
    before_fill, started = memory_mib()["VmRSS"], time.perf_counter()
    fill([embedding.params] + state, splitmix64(np.arange(rows)))
    return {"model": model, "embedding": embedding, "state": state, "train_step": train_step,
            "fill_s": time.perf_counter() - started, "rss_before_fill_mib": before_fill}


def measure_config(rows, optimizer_key, growth_from=None):
    """The step times, table sizes and memory of one optimizer on a table of `rows` ids."""
    # One thread by default: a step then keeps its pace better when another process takes a core
    # of a small shared machine.
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    # Seeded by N: the same batches and labels for every optimizer at this N.
    batches = zipf_batches(rows, 20, np.random.default_rng(rows))
    labels = tf.constant(np.random.default_rng(0).integers(0, 2, (FLAGS.batch // FLAGS.ids_per_example, 1)),
                         tf.float32)
    run = filled_model(f"ids_{optimizer_key}_{rows}", optimizer_key, rows, batches, labels)
    # The baseline trains the same model and tables, for the ratio; legacy SGD keeps no tables, so
    # the memory stays the measured optimizer's. (At the baseline's own rows, SGD against SGD: the
    # ratio then shows the measurement's noise.)
    baseline_step = train_step_function(run["model"], make_optimizer(BASELINE))
    baseline_step(batches[0], labels)
    memory = memory_mib()  # before the smaller table below joins the process
    train_steps = {"measured": (run["train_step"], batches), "baseline": (baseline_step, batches)}
    if growth_from:
        # The same optimizer on its own table of `growth_from` rows, timed alternately: the
        # growth with N, free of the machine's drift between processes.
        small_batches = zipf_batches(growth_from, 20, np.random.default_rng(growth_from))
        small = filled_model(f"ids_{optimizer_key}_{growth_from}_small", optimizer_key, growth_from,
                             small_batches, labels)
        train_steps["smaller"] = (small["train_step"], small_batches)
    times = block_times_ms(train_steps, labels)
    state = run["state"]
    tables = [("embedding", run["embedding"].params)] + [("optimizer state", table) for table in state]
    profiles = {name: op_profile_ms(train_steps[name][0], batches, labels, tables)
                for name in ("measured", "baseline")} if FLAGS.profile_steps else None
    return {
        "rows": rows,
        "optimizer": optimizer_key,
        "step_ms": statistics.median(times["measured"]),
        "fastest_block_step_ms": min(times["measured"]),
        "step_vs_sgd": median_ratio(times["measured"], times["baseline"]),
        "growth_from": growth_from,
        "growth": median_ratio(times["measured"], times["smaller"]) if growth_from else None,
        # A larger N puts more of Zipf's mass in the tail: more distinct ids, so more rows, a step.
        "distinct_ids_per_step": float(np.mean([np.unique(b.numpy()).size for b in batches])),
        "embedding_rows": int(run["embedding"].params.size()),
        "state_tables": {table.name: {"rows": int(table.size()), "width": table.dim} for table in state},
        # Value bytes only: each table also stores an 8-byte key a row.
        "state_value_bytes_per_row": sum(int(t.size()) * t.dim * t.value_dtype.size for t in state) / rows,
        "fill_s": run["fill_s"],
        "rss_before_fill_mib": run["rss_before_fill_mib"],
        "rss_after_fill_mib": memory["VmRSS"],
        "peak_rss_mib": memory["VmHWM"],
        "op_profile_ms": profiles,
    }


# ---- The driver: one subprocess a configuration, then the reports. ----


def run_config(rows, optimizer_key, growth_from):
    """Runs one configuration in a fresh Python; its result, or its error's last lines."""
    config = ",".join(map(str, [rows, optimizer_key] + ([growth_from] if growth_from else [])))
    command = [sys.executable, os.path.abspath(__file__), f"--one_config={config}"]
    command += [FLAGS[name].serialize() for name in CONFIG_FLAGS]
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True)
    for line in process.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
            break
    else:
        error = "\n".join((process.stderr or process.stdout).strip().splitlines()[-15:])
        result = {"rows": rows, "optimizer": optimizer_key, "error": error}
    result["wall_s"] = time.perf_counter() - started
    result["load_average"] = os.getloadavg()[0]  # other processes on the machine skew the timing
    return result


def size_label(rows):
    exponent = np.log10(rows)
    return f"10^{exponent:g}" if exponent == int(exponent) else f"{rows:,}"


def print_tables(results, sizes):
    by_key = {(r["rows"], r["optimizer"]): r for r in results}
    print(f"\nTFRA dynamic embedding, dim {FLAGS.dim}, {FLAGS.batch} Zipf({FLAGS.zipf_exponent}) ids a step; "
          f"median ms a step (x {LABELS[BASELINE]}, timed alternately in the same process)\n")
    header = " | ".join(f"N = {size_label(rows)}" for rows in sizes)
    print(f"| optimizer | state B/row | {header} | step at {size_label(sizes[-1])} / at {size_label(sizes[0])} "
          f"| peak RSS at {size_label(sizes[-1])} |")
    print("|---|---|" + "---|" * len(sizes) + "---|---|")
    for key in FLAGS.optimizers:
        cells, state = [], "-"
        for rows in sizes:
            r = by_key[rows, key]
            if "error" in r:
                cells.append("failed")
                continue
            state = f"{r['state_value_bytes_per_row']:g}"
            cells.append(f"{r['step_ms']:.1f} ({r['step_vs_sgd']:.2f}x)")
        largest = by_key[sizes[-1], key]
        peak = "-" if "error" in largest else f"{largest['peak_rss_mib'] / 1024:.2f} GiB"
        grows = f"{largest['growth']:.2f}x" if largest.get("growth") else "-"
        print(f"| {LABELS[key]} | {state} | {' | '.join(cells)} | {grows} | {peak} |")
    print("\n| N | optimizer | distinct ids a step | embedding rows | optimizer tables (rows x width) | fill (s) "
          "| RSS before fill (MiB) | RSS after fill (MiB) | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            continue
        tables = ", ".join(f"{t['rows']:,} x {t['width']}" for t in r["state_tables"].values()) or "none"
        print(f"| {size_label(r['rows'])} | {LABELS[r['optimizer']]} | {r['distinct_ids_per_step']:,.0f} "
              f"| {r['embedding_rows']:,} | {tables} "
              f"| {r['fill_s']:.1f} | {r['rss_before_fill_mib']:.0f} | {r['rss_after_fill_mib']:.0f} "
              f"| {r['peak_rss_mib']:.0f} |")
    for r in results:
        if "error" in r:
            print(f"\n{LABELS[r['optimizer']]} at N = {size_label(r['rows'])} failed:\n{r['error']}")


def plot(results, sizes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {  # field: (y label, title, scale)
        "step_ms": ("ms a training step (median block)", "Step time (drifts ±30% between processes)", 1),
        "step_vs_sgd": ("step time / SGD's, timed alternately", "Step time over SGD's, same process", 1),
        "peak_rss_mib": ("peak resident memory (GiB)", "Peak memory of the process", 1 / 1024),
    }
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5))
    for axis, (field, (ylabel, title, scale)) in zip(axes, panels.items()):
        for key in FLAGS.optimizers:
            runs = sorted((r for r in results if r["optimizer"] == key and "error" not in r), key=lambda r: r["rows"])
            axis.plot([r["rows"] for r in runs], [r[field] * scale for r in runs], marker="o",
                      linestyle="-" if "counter" in key else "--", label=LABELS[key])
        axis.set(xscale="log", xlabel="distinct ids in the TFRA table (N)", ylabel=ylabel, title=title)
        axis.set_xticks(sizes, [size_label(rows) for rows in sizes])
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
    axes[0].legend()
    figure.suptitle(f"TFRA dynamic embedding, dim {FLAGS.dim}, {FLAGS.batch} Zipf({FLAGS.zipf_exponent}) ids a step")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv):
    del argv
    bench_flags.apply_quick({"sizes": ["100000"], "optimizers": [BASELINE, "counter_sgd"], "warmup_steps": 2,
                             "blocks": 3, "steps_per_block": 3})
    unknown = set(FLAGS.optimizers) - set(LABELS)
    if unknown:
        raise SystemExit(f"Unknown optimizers {sorted(unknown)}; choose from {sorted(LABELS)}.")
    if FLAGS.one_config:
        rows, key, *growth_from = FLAGS.one_config.split(",")
        result = measure_config(int(rows), key, *map(int, growth_from))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return
    started = time.perf_counter()
    sizes = sorted(map(int, FLAGS.sizes))
    results = []
    for rows in sizes:
        for key in FLAGS.optimizers:
            # The growth from the smallest N is timed along with the largest N.
            result = run_config(rows, key, sizes[0] if rows == sizes[-1] != sizes[0] else None)
            status = result.get("error", "").splitlines()[-1:] or [
                f"{result['step_ms']:.1f} ms a step ({result['step_vs_sgd']:.2f}x SGD), "
                f"peak {result['peak_rss_mib']:.0f} MiB"]
            print(f"N = {size_label(rows)}, {LABELS[key]}: {status[0]} ({result['wall_s']:.0f} s)", flush=True)
            results.append(result)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    settings = {name: FLAGS[name].value for name in CONFIG_FLAGS}
    with open(os.path.join(FLAGS.output_dir, "dynamic_scale.json"), "w") as f:
        json.dump({"settings": settings, "labels": {key: LABELS[key] for key in FLAGS.optimizers},
                   "results": results}, f, indent=2)
    plot(results, sizes, os.path.join(FLAGS.output_dir, "dynamic_scale.png"))
    print_tables(results, sizes)
    print(f"\nTotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    app.run(main)
