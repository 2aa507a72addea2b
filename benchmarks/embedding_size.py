"""Embedding size: MLET and PEP against plain tables on MovieLens 100K (rating RMSE, CTR AUC).

Run: `.venv/bin/python benchmarks/embedding_size.py` (`make bench-embedding-size`; about 11 minutes
on 2 cores). Writes `benchmarks/results/embedding_size.json`, `embedding_size_mlet.png` and
`embedding_size_pep.png`, and prints the README's tables.

Protocol. Ratings split 80/10/10 at random (seed 0). Two tasks on the same split: *rating*,
``r̂ = <u, v> + b_user + b_item + mean rating`` trained by mean squared error, reported as RMSE;
*CTR*, the same score as a logit on the CTR view (rating 3 dropped, > 3 positive), trained by
sigmoid cross-entropy, reported as AUC. ``u`` and ``v`` are the embedding under test (users and
items); the biases are plain tables of width 1 (not counted as embedding parameters). Batch 256,
a fixed number of epochs; the epoch is chosen on validation and the test metric is reported there.
`--quick`: 1 epoch, CounterSGD only, one width each and one PEP run (a smoke run, about a minute).
One seed (0): differences below about 0.002 AUC / 0.003 RMSE are within run-to-run noise here.

* Plain: ``tf.keras.layers.Embedding`` at each width of ``--plain_dims``; *biases only*: no vectors.
* MLET: ``MLETEmbedding(n, d, inner_dim)`` at each width of ``--mlet_dims``; its inference size is
  ``n · d`` (the collapsed table).
* PEP: ``PEPEmbedding(n, --pep_dim)`` (granularity feature_dim) pruned from each threshold
  initialisation of ``--pep_threshold_inits``, with ``PEPSparsityCallback`` saving the masks when
  each of ``--pep_targets`` is first reached; each target's ticket (the mask from the mildest
  initialisation that reached it, and the initial values) is retrained as a ``MaskedEmbedding``.
  Parameters are the non-zero entries.

Learning rates are chosen per task and optimizer on validation from a 3-point grid: for plain
tables at d = 32 (reused for every plain width, biases only, and PEP), and for MLET at d = 8
(reused for its other widths).
"""

import json
import os
import tempfile
import time

import numpy as np
from absl import app, flags

# tf_keras (Keras 2) as tf.keras, chosen before TensorFlow is imported: TFRS, TFRA and the tf_keras
# optimizers compared here need it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf

import bench_flags  # noqa: E402  (beside this script)
from tf_freqsgd import data as data_lib
from tf_freqsgd.evaluation import auc
from tf_freqsgd.layers import MaskedEmbedding, MLETEmbedding, PEPEmbedding, PEPSparsityCallback
from tf_freqsgd.models.training import make_optimizer

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ML100K_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "ml-100k")
TASKS = ("rating", "ctr")
OPTIMIZERS = ("counter_sgd", "adagrad")  # by tf_freqsgd.models.training's names (legacy Adagrad)
LABELS = {"counter_sgd": "CounterSGD", "adagrad": "Adagrad"}
# Rates are large with a loss averaged over the batch (README, choice of defaults).
GRIDS = {"rating": (0.3, 1.0, 3.0), "ctr": (3.0, 10.0, 30.0)}
TUNED_PLAIN_DIM, TUNED_MLET_DIM = 32, 8

flags.DEFINE_string("data_dir", ML100K_DIR, "MovieLens 100K files; the built-in synthetic data when absent.")
flags.DEFINE_integer("epochs", 8, "Epochs per run; the epoch is chosen on validation.")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_list("optimizers", list(OPTIMIZERS), "Optimizers to measure.")
flags.DEFINE_list("plain_dims", ["4", "8", "16", "32", "64"], "Widths of the plain tables.")
flags.DEFINE_list("mlet_dims", ["4", "8", "16"], "Served widths of MLET.")
flags.DEFINE_integer("mlet_inner_dim", 64, "MLET's inner width.")
flags.DEFINE_integer("pep_dim", 32, "PEP's width (the full model is the plain table of this width).")
# sigmoid(s) against the U(-0.05, 0.05) initial entries: about 13 %, 36 %, 78 %, 86 % and 95 % start pruned.
flags.DEFINE_list("pep_threshold_inits", ["-5", "-4", "-3.2", "-3.1", "-3"], "PEP's initial thresholds s.")
flags.DEFINE_list("pep_targets", ["0.5", "0.8", "0.9", "0.95"], "Sparsities whose masks are retrained.")
flags.DEFINE_integer("pep_every_n_batches", 25, "PEPSparsityCallback measures every this many batches.")
flags.DEFINE_string("output_json", os.path.join(RESULTS_DIR, "embedding_size.json"), "Output path.")
flags.DEFINE_string("output_png_prefix", os.path.join(RESULTS_DIR, "embedding_size"), "Plot path prefix.")
FLAGS = flags.FLAGS

FEATURES = ("user_id", "item_id")


def load_splits():
    """(dataset name, {task: (train, validation, test)}, number of users, number of items)."""
    if os.path.exists(os.path.join(FLAGS.data_dir, "u.data")):
        movielens = data_lib.load_movielens("ml-100k", FLAGS.data_dir)
    else:
        movielens = data_lib.load_movielens("synthetic")
    parts = data_lib.train_val_test_split(movielens.ratings, seed=0)
    splits = {"rating": parts, "ctr": [data_lib.ctr_view(part) for part in parts]}
    return movielens.name, splits, movielens.num_users, movielens.num_items


def ranking_model(make_embedding, num_users, num_items, offset):
    """``score = <u_user, v_item> + b_user + b_item + offset`` with ``make_embedding(n, name)`` vectors
    (None: biases only)."""
    tf.keras.utils.set_random_seed(0)
    user = tf.keras.Input(shape=(), dtype=tf.int64, name="user_id")
    item = tf.keras.Input(shape=(), dtype=tf.int64, name="item_id")
    terms = [tf.keras.layers.Embedding(num_users, 1, embeddings_initializer="zeros", name="user_bias")(user),
             tf.keras.layers.Embedding(num_items, 1, embeddings_initializer="zeros", name="item_bias")(item)]
    if make_embedding is not None:
        user_vector = make_embedding(num_users, "user")(user)
        item_vector = make_embedding(num_items, "item")(item)
        terms.append(tf.keras.layers.Dot(axes=-1)([user_vector, item_vector]))
    score = tf.keras.layers.Reshape(())(tf.keras.layers.Add()(terms))
    return tf.keras.Model({"user_id": user, "item_id": item}, score + offset)


def metric(task, part, scores):
    if not np.all(np.isfinite(scores)):
        return None
    if task == "rating":
        return float(np.sqrt(np.mean((scores - part["rating"]) ** 2)))
    return auc(part["label"], scores)


def better(task, a, b):
    """Whether metric value ``a`` beats ``b`` (None never does)."""
    if a is None:
        return False
    return b is None or (a < b if task == "rating" else a > b)


def train(task, splits, counts, make_embedding, optimizer, learning_rate, callbacks=()):
    """Trains one model; returns its per-epoch validation and test metrics, the chosen epoch, and
    the model. A run that diverges stops there (its later epochs count as failed)."""
    train_part, validation, test = splits[task]
    offset = float(train_part["rating"].mean()) if task == "rating" else 0.0
    model = ranking_model(make_embedding, *counts, offset)
    loss = "mse" if task == "rating" else tf.keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(make_optimizer(optimizer, learning_rate), loss)
    target = train_part["rating"] if task == "rating" else train_part["label"]
    curves = {"validation": [], "test": []}
    for _ in range(FLAGS.epochs):
        try:
            model.fit({k: train_part[k] for k in FEATURES}, target, batch_size=FLAGS.batch_size, epochs=1,
                      verbose=0, shuffle=True, callbacks=list(callbacks))
        except tf.errors.InvalidArgumentError:  # CounterSGD refuses a non-finite gradient
            break
        for name, part in (("validation", validation), ("test", test)):
            scores = model.predict({k: part[k] for k in FEATURES}, batch_size=8192, verbose=0)
            curves[name].append(metric(task, part, scores))
        if curves["validation"][-1] is None:
            break
    best = None
    for epoch, value in enumerate(curves["validation"]):
        if better(task, value, None if best is None else curves["validation"][best]):
            best = epoch
    result = {"learning_rate": learning_rate, "curves": curves, "epoch": None if best is None else best + 1,
              "validation": None if best is None else curves["validation"][best],
              "test": None if best is None else curves["test"][best]}
    return result, model


def tuned(task, splits, counts, make_embedding, optimizer):
    """The grid's run with the best validation metric, and every run's summary."""
    runs = []
    best = None
    for learning_rate in GRIDS[task]:
        result, _ = train(task, splits, counts, make_embedding, optimizer, learning_rate)
        runs.append({key: result[key] for key in ("learning_rate", "epoch", "validation", "test")})
        if best is None or better(task, result["validation"], best["validation"]):
            best = result
    if best["validation"] is None:
        raise RuntimeError(f"{task}/{optimizer}: every learning rate of {GRIDS[task]} diverged")
    best["grid"] = runs
    return best


def plain(dim):
    return lambda n, name: tf.keras.layers.Embedding(n, dim, name=name)


def mlet(dim):
    return lambda n, name: MLETEmbedding(n, dim, FLAGS.mlet_inner_dim, name=name)


def summary(result, parameters, **extra):
    keys = ("learning_rate", "epoch", "validation", "test", "grid")
    return {**{key: result[key] for key in keys if key in result}, "parameters": parameters, **extra}


def measure_plain_and_mlet(task, optimizer, splits, counts):
    total_ids = sum(counts)
    out = {"plain": {}, "mlet": {}}
    best = tuned(task, splits, counts, plain(TUNED_PLAIN_DIM), optimizer)
    plain_rate = best["learning_rate"]
    out["plain"][TUNED_PLAIN_DIM] = summary(best, total_ids * TUNED_PLAIN_DIM)
    for dim in map(int, FLAGS.plain_dims):
        if dim != TUNED_PLAIN_DIM:
            result, _ = train(task, splits, counts, plain(dim), optimizer, plain_rate)
            out["plain"][dim] = summary(result, total_ids * dim)
    result, _ = train(task, splits, counts, None, optimizer, plain_rate)
    out["biases_only"] = summary(result, 0)
    best = tuned(task, splits, counts, mlet(TUNED_MLET_DIM), optimizer)
    mlet_rate = best["learning_rate"]
    inner = FLAGS.mlet_inner_dim
    training = lambda dim: total_ids * inner + 2 * inner * dim  # noqa: E731
    out["mlet"][TUNED_MLET_DIM] = summary(best, total_ids * TUNED_MLET_DIM, training_parameters=training(8))
    for dim in map(int, FLAGS.mlet_dims):
        if dim != TUNED_MLET_DIM:
            result, _ = train(task, splits, counts, mlet(dim), optimizer, mlet_rate)
            out["mlet"][dim] = summary(result, total_ids * dim, training_parameters=training(dim))
    return out, plain_rate


def measure_pep(task, optimizer, splits, counts, learning_rate, directory):
    """Pruning runs from each threshold initialisation, then one retrain per target reached."""
    dim = FLAGS.pep_dim
    targets = [float(t) for t in FLAGS.pep_targets]
    pruning = []
    # Mildest (most negative) first: a target's ticket comes from the mildest run that reached it.
    for init in sorted(map(float, FLAGS.pep_threshold_inits)):
        run_dir = os.path.join(directory, f"{task}-{optimizer}-init{init:g}")
        callback = PEPSparsityCallback(targets, run_dir, every_n_batches=FLAGS.pep_every_n_batches)
        make = lambda n, name, init=init: PEPEmbedding(n, dim, threshold_init=init, name=name)  # noqa: E731
        result, model = train(task, splits, counts, make, optimizer, learning_rate, callbacks=[callback])
        nonzero = sum(layer.inference_parameter_count() for layer in callback.layers)
        pruning.append(summary(result, nonzero, threshold_init=init, directory=run_dir, history=callback.history,
                               reached={str(t): point for t, point in callback.reached.items()}))
    retrained = []
    for target in targets:
        source = next((run for run in pruning if str(target) in run["reached"]), None)
        if source is None:
            continue
        layers = {}

        def make(n, name, target=target, source=source):
            layers[name] = MaskedEmbedding.from_saved(source["directory"], name, target)
            return layers[name]

        result, _ = train(task, splits, counts, make, optimizer, learning_rate)
        parameters = sum(layer.inference_parameter_count() for layer in layers.values())
        retrained.append(summary(result, parameters, target_sparsity=target,
                                 sparsity=1 - parameters / (sum(counts) * dim),
                                 threshold_init=source["threshold_init"]))
    for run in pruning:
        del run["directory"]
    return {"pruning": pruning, "retrained": retrained}


def target_checks(task, results):
    """The issue's targets, per optimizer: MLET at d <= 8 as good as plain d = 32; PEP's retrained
    ticket at >= 90 % sparsity within 0.005 AUC of the full model (CTR)."""
    checks = {}
    for optimizer, result in results.items():
        reference = result["plain"][TUNED_PLAIN_DIM]["test"]
        small = [dim for dim, run in result["mlet"].items() if dim <= 8 and not better(task, reference, run["test"])]
        checks[optimizer] = {"plain_d32": reference, "mlet_matches_plain_d32_at": min(small) if small else None}
        if task == "ctr":
            full = result["plain"][FLAGS.pep_dim]["test"]
            sparse = [run for run in result["pep"]["retrained"] if run["sparsity"] >= 0.9 and run["test"] is not None]
            checks[optimizer]["pep_auc_drop_at_90_percent"] = (
                None if not sparse else round(full - max(run["test"] for run in sparse), 4))
    return checks


def plot(results, dataset, path_prefix):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"rating": "test RMSE (lower is better)", "ctr": "test AUC"}
    colors = {"counter_sgd": "tab:blue", "adagrad": "tab:orange"}
    paths = []
    for figure_name in ("mlet", "pep"):
        figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for axis, task in zip(axes, TASKS):
            for optimizer, result in results[task].items():
                color, label = colors.get(optimizer), LABELS[optimizer]
                dims = sorted(result["plain"])
                axis.plot([result["plain"][d]["parameters"] for d in dims], [result["plain"][d]["test"] for d in dims],
                          "o-", color=color, alpha=0.5, label=f"plain d={dims[0]}..{dims[-1]}, {label}")
                axis.axhline(result["biases_only"]["test"], color=color, linestyle=":", label=f"biases only, {label}")
                if figure_name == "mlet":
                    dims = sorted(result["mlet"])
                    axis.plot([result["mlet"][d]["parameters"] for d in dims],
                              [result["mlet"][d]["test"] for d in dims], "s--", color=color,
                              label=f"MLET d={dims[0]}..{dims[-1]} (inner {FLAGS.mlet_inner_dim}), {label}")
                else:
                    runs = [r for r in result["pep"]["retrained"] if r["test"] is not None]
                    axis.plot([r["parameters"] for r in runs], [r["test"] for r in runs], "^--", color=color,
                              label=f"PEP retrained tickets, {label}")
                    runs = [r for r in result["pep"]["pruning"] if r["test"] is not None]
                    axis.plot([r["parameters"] for r in runs], [r["test"] for r in runs], "x", color=color,
                              label=f"PEP pruning runs, {label}")
            axis.set_xscale("symlog", linthresh=1000)
            axis.set_xlabel("embedding parameters at inference")
            axis.set_ylabel(names[task])
            axis.set_title(f"{dataset}, {task}")
            axis.grid(alpha=0.3)
        axes[1].legend(fontsize=7)
        figure.tight_layout()
        path = f"{path_prefix}_{figure_name}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def print_tables(results):
    def cell(value, digits=4):
        return "diverged" if value is None else f"{value:.{digits}f}"

    for task in TASKS:
        metric_name = "RMSE" if task == "rating" else "AUC"
        optimizers = list(results[task])
        print(f"\n{task}: test {metric_name} (lr, epoch chosen on validation)\n")
        print("| model | embedding params (inference) | " + " | ".join(LABELS[o] for o in optimizers) + " |")
        print("|---|---|" + "---|" * len(optimizers))
        first = results[task][optimizers[0]]
        rows = [("biases only", 0, lambda r: r["biases_only"])]
        rows += [(f"plain d={d}", first["plain"][d]["parameters"], lambda r, d=d: r["plain"][d])
                 for d in sorted(first["plain"])]
        rows += [(f"MLET d={d} (inner {FLAGS.mlet_inner_dim})", first["mlet"][d]["parameters"],
                  lambda r, d=d: r["mlet"][d]) for d in sorted(first["mlet"])]
        for name, parameters, pick in rows:
            cells = [f"{cell(pick(results[task][o])['test'])} (lr {pick(results[task][o])['learning_rate']:g}, "
                     f"ep {pick(results[task][o])['epoch']})" for o in optimizers]
            print(f"| {name} | {parameters:,} | " + " | ".join(cells) + " |")
        for optimizer in optimizers:
            pep = results[task][optimizer]["pep"]
            print(f"\nPEP d={FLAGS.pep_dim}, {LABELS[optimizer]} ({task}, test {metric_name}):\n")
            print("| phase | threshold init | target | non-zero params | sparsity | test | epoch |")
            print("|---|---|---|---|---|---|---|")
            total = sum(results["counts"]) * FLAGS.pep_dim
            for run in pep["pruning"]:
                print(f"| pruning | {run['threshold_init']:g} | | {run['parameters']:,} | "
                      f"{1 - run['parameters'] / total:.3f} | {cell(run['test'])} | {run['epoch']} |")
            for run in pep["retrained"]:
                print(f"| retrained ticket | {run['threshold_init']:g} | {run['target_sparsity']:g} | "
                      f"{run['parameters']:,} | {run['sparsity']:.3f} | {cell(run['test'])} | {run['epoch']} |")


def main(argv):
    del argv
    bench_flags.apply_quick({"epochs": 1, "plain_dims": ["8"], "mlet_dims": ["4"], "optimizers": ["counter_sgd"],
                             "pep_threshold_inits": ["-3"], "pep_targets": ["0.5"]})
    started = time.perf_counter()
    dataset, splits, num_users, num_items = load_splits()
    counts = (num_users, num_items)
    results = {"dataset": dataset, "counts": counts, "epochs": FLAGS.epochs, "batch_size": FLAGS.batch_size,
               "grids": GRIDS, "mlet_inner_dim": FLAGS.mlet_inner_dim, "pep_dim": FLAGS.pep_dim}
    with tempfile.TemporaryDirectory() as directory:
        for task in TASKS:
            results[task] = {}
            for optimizer in FLAGS.optimizers:
                task_started = time.perf_counter()
                result, plain_rate = measure_plain_and_mlet(task, optimizer, splits, counts)
                result["pep"] = measure_pep(task, optimizer, splits, counts, plain_rate, directory)
                results[task][optimizer] = result
                print(f"{task} / {optimizer}: {time.perf_counter() - task_started:.0f} s", flush=True)
    results["targets"] = {task: target_checks(task, results[task]) for task in TASKS}
    results["seconds"] = time.perf_counter() - started
    os.makedirs(os.path.dirname(FLAGS.output_json), exist_ok=True)
    with open(FLAGS.output_json, "w") as file:
        json.dump(results, file, indent=1)
    plots = plot({task: results[task] for task in TASKS}, dataset, FLAGS.output_png_prefix)
    print_tables(results)
    print("\ntargets:", json.dumps(results["targets"], indent=1))
    print(f"\n{dataset}; wrote {FLAGS.output_json}, {', '.join(plots)}; {results['seconds']:.0f} s")


if __name__ == "__main__":
    app.run(main)
