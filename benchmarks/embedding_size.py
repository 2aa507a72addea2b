"""Embedding size: MLET and PEP against plain tables on MovieLens 100K (rating RMSE, CTR AUC).

Run: `.venv/bin/python benchmarks/embedding_size.py` (`make bench-embedding-size`; about 35 minutes
on 2 shared cores). Writes `benchmarks/results/embedding_size.json`, `embedding_size_mlet.png` and
`embedding_size_pep.png`, and prints the README's tables.

Protocol. Ratings split 80/10/10 at random (seed 0). Two tasks on the same split: *rating*,
``r̂ = <u, v> + b_user + b_item + mean rating`` trained by mean squared error, reported as RMSE;
*CTR*, the same score as a logit on the CTR view (rating 3 dropped, > 3 positive), trained by
sigmoid cross-entropy, reported as AUC. ``u`` and ``v`` are the embedding under test (users and
items); the biases are plain tables of width 1 (not counted as embedding parameters). Batch 256,
a fixed number of epochs; the epoch is chosen on validation and the test metric is reported there.
``--seeds`` seeds (initial values and batch order; default 3): each run's metrics are averaged over
them. `--quick`: 1 seed, 1 epoch, CounterSGD only, one width each and one PEP run (a smoke run).

* Plain: ``tf.keras.layers.Embedding`` at each width of ``--plain_dims``; *biases only*: no vectors.
* MLET: ``MLETEmbedding(n, d, inner_dim)`` at each width of ``--mlet_dims``, the inner width chosen
  from ``--mlet_inner_dims`` on validation at d = 8; its inference size is ``n · d`` (the collapsed table).
* PEP (``--pep_tasks``, CTR): ``PEPEmbedding(n, --pep_dim)`` (granularity feature_dim) pruned from each
  threshold initialisation of ``--pep_threshold_inits``, with ``PEPSparsityCallback`` saving the masks
  when each of ``--pep_targets`` is first reached. The thresholds learn with a step of their own: under
  CounterSGD they are trained by Adam (``dense_optimizer`` pairing, rate ``DENSE_ADAM_RATE``), under
  Adagrad they are scaled (``threshold_scale``). Each target's ticket (the mask from the mildest
  initialisation that reached it, and that run's tables at the rewind point: after ``--rewind_epochs``
  epochs, late rewinding) is retrained as a ``MaskedEmbedding`` for ``--retrain_epochs``. For
  reference, the *magnitude ticket* keeps the largest entries of the full d = 32 model after training;
  the *frequency ticket* spends the same sparsity by id frequency (``frequency_mask``: row i keeps its
  first k_i ∝ count_i^--frequency_exponent columns, counts from the training split). Both start from
  the full model's tables at the rewind point and are retrained the same way. Parameters are the
  non-zero entries.
* Serving: each model of seed 0 is exported by ``export_for_serving`` (MLET collapsed, PEP tickets as
  their non-zero entries when smaller) and the bytes of its SavedModel's ``variables/`` are recorded.

Learning rates are chosen per task and optimizer on validation at seed 0 from a 3-point grid (the other
seeds reuse them): for plain tables at d = 32 (reused for every plain width, biases only, and PEP), and
for MLET at d = 8 (reused for its other widths).
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
from tf_freqsgd.export import export_for_serving
from tf_freqsgd.layers import (MaskedEmbedding, MLETEmbedding, PEPEmbedding, PEPSparsityCallback, frequency_mask,
                               initial_embeddings_path, mask_path)
from tf_freqsgd.models.training import make_optimizer

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ML100K_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "ml-100k")
TASKS = ("rating", "ctr")
OPTIMIZERS = ("counter_sgd", "adagrad")  # by tf_freqsgd.models.training's names (legacy Adagrad)
LABELS = {"counter_sgd": "CounterSGD", "adagrad": "Adagrad"}
# Rates are large with a loss averaged over the batch (README, choice of defaults).
GRIDS = {"rating": (0.3, 1.0, 3.0), "ctr": (3.0, 10.0, 30.0)}
TUNED_PLAIN_DIM, TUNED_MLET_DIM = 32, 8
# The targets: the retrained PEP ticket's AUC drop from the full model, at each sparsity (checked for the
# frequency ticket too).
PEP_TARGETS = {0.9: 0.005, 0.8: 0.002}
TICKET_KINDS = {"retrained": "PEP tickets", "magnitude": "magnitude tickets", "frequency": "frequency tickets"}

flags.DEFINE_string("data_dir", ML100K_DIR, "MovieLens 100K files; the built-in synthetic data when absent.")
flags.DEFINE_integer("seeds", 3, "Seeds (initial values and batch order; the split stays seed 0's).")
flags.DEFINE_integer("epochs", 12, "Epochs per run; the epoch is chosen on validation.")
flags.DEFINE_integer("rewind_epochs", 1, "Tickets retrain from their source run's tables after this many epochs "
                     "(0: the initial values, the original lottery ticket).")
flags.DEFINE_integer("retrain_epochs", 20, "Epochs of a PEP ticket's retrain (fewer entries grow more slowly).")
flags.DEFINE_integer("batch_size", 256, "Batch size.")
flags.DEFINE_list("optimizers", list(OPTIMIZERS), "Optimizers to measure.")
flags.DEFINE_list("plain_dims", ["4", "8", "32"], "Widths of the plain tables.")
flags.DEFINE_list("mlet_dims", ["4", "8"], "Served widths of MLET.")
flags.DEFINE_list("mlet_inner_dims", ["16", "64"], "MLET's inner widths; one is chosen on validation at d = 8.")
flags.DEFINE_integer("pep_dim", 32, "PEP's width (the full model is the plain table of this width).")
flags.DEFINE_list("pep_tasks", ["ctr"], "Tasks PEP is measured on (its targets are CTR's).")
# sigmoid(s) against the U(-0.05, 0.05) initial entries: about 5 %, 36 % and 78 % start pruned.
flags.DEFINE_list("pep_threshold_inits", ["-6", "-4", "-3.2"], "PEP's initial thresholds s.")
flags.DEFINE_list("pep_targets", ["0.8", "0.9", "0.95"], "Sparsities whose masks are retrained.")
flags.DEFINE_float("pep_adagrad_threshold_scale", 25.0, "PEPEmbedding's threshold_scale under Adagrad: s = c·θ "
                   "moves c² as far per step (CounterSGD trains s with Adam instead).")
flags.DEFINE_float("frequency_exponent", 0.5, "The frequency ticket's widths grow as count ** this.")
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


def ranking_model(make_embedding, num_users, num_items, offset, seed):
    """``score = <u_user, v_item> + b_user + b_item + offset`` with ``make_embedding(n, name)`` vectors
    (None: biases only)."""
    tf.keras.utils.set_random_seed(seed)
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


class RewindTables(tf.keras.callbacks.Callback):
    """Keeps the named layers' tables at the rewind point, after ``epochs`` epochs counted across ``fit``
    calls (0: as training starts): the values the magnitude and frequency tickets retrain from."""

    def __init__(self, names, epochs):
        super().__init__()
        self.names, self.epochs, self.tables, self._epochs_done = names, epochs, {}, 0

    def on_train_begin(self, logs=None):
        self._keep_at_rewind_point()

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_done += 1
        self._keep_at_rewind_point()

    def _keep_at_rewind_point(self):
        if not self.tables and self._epochs_done == self.epochs:
            self.tables = {name: self.model.get_layer(name).embeddings.numpy() for name in self.names}


def train(task, splits, counts, make_embedding, optimizer, learning_rate, seed, callbacks=(), epochs=None):
    """Trains one model; returns its per-epoch validation and test metrics, the chosen epoch, and
    the model. A run that diverges stops there (its later epochs count as failed)."""
    train_part, validation, test = splits[task]
    offset = float(train_part["rating"].mean()) if task == "rating" else 0.0
    model = ranking_model(make_embedding, *counts, offset, seed)
    loss = "mse" if task == "rating" else tf.keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(make_optimizer(optimizer, learning_rate), loss)
    target = train_part["rating"] if task == "rating" else train_part["label"]
    curves = {"validation": [], "test": []}
    for _ in range(epochs or FLAGS.epochs):
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


def tuned(task, splits, counts, make_embedding, optimizer, seed):
    """The grid's run with the best validation metric, and every run's summary."""
    runs = []
    best = None
    for learning_rate in GRIDS[task]:
        result, _ = train(task, splits, counts, make_embedding, optimizer, learning_rate, seed)
        runs.append({key: result[key] for key in ("learning_rate", "epoch", "validation", "test")})
        if best is None or better(task, result["validation"], best["validation"]):
            best = result
    if best["validation"] is None:
        raise RuntimeError(f"{task}/{optimizer}: every learning rate of {GRIDS[task]} diverged")
    best["grid"] = runs
    return best


def plain(dim):
    return lambda n, name: tf.keras.layers.Embedding(n, dim, name=name)


def mlet(dim, inner_dim):
    return lambda n, name: MLETEmbedding(n, dim, inner_dim, name=name)


def summary(result, parameters, **extra):
    keys = ("learning_rate", "epoch", "validation", "test", "grid")
    return {**{key: result[key] for key in keys if key in result}, "parameters": parameters, **extra}


def serving_bytes(model):
    """Bytes on disk of the weights of ``model``'s serving export (the SavedModel's variables/)."""
    with tempfile.TemporaryDirectory() as directory:
        export_for_serving(model, os.path.join(directory, "1"))
        variables = os.path.join(directory, "1", "variables")
        return sum(os.path.getsize(os.path.join(variables, name)) for name in os.listdir(variables))


def measure_plain_and_mlet(task, optimizer, splits, counts, seed, chosen):
    """Plain tables, biases only and MLET for one seed. ``chosen`` holds the learning rates (and MLET's
    inner width) chosen on validation at seed 0; the first seed fills it, the others reuse it."""
    total_ids = sum(counts)
    out = {"plain": {}, "mlet": {}}
    if "plain_rate" not in chosen:
        best = tuned(task, splits, counts, plain(TUNED_PLAIN_DIM), optimizer, seed)
        chosen["plain_rate"] = best["learning_rate"]
    for dim in map(int, FLAGS.plain_dims):
        result, model = train(task, splits, counts, plain(dim), optimizer, chosen["plain_rate"], seed)
        out["plain"][dim] = summary(result, total_ids * dim, serving_bytes=serving_bytes(model) if seed == 0 else None)
    result, model = train(task, splits, counts, None, optimizer, chosen["plain_rate"], seed)
    out["biases_only"] = summary(result, 0, serving_bytes=serving_bytes(model) if seed == 0 else None)
    if "mlet_rate" not in chosen:
        inner_dims = sorted(map(int, FLAGS.mlet_inner_dims))
        best = tuned(task, splits, counts, mlet(TUNED_MLET_DIM, inner_dims[-1]), optimizer, seed)
        best["inner_dim"] = inner_dims[-1]
        for inner in inner_dims[:-1]:
            result, _ = train(task, splits, counts, mlet(TUNED_MLET_DIM, inner), optimizer, best["learning_rate"], seed)
            best["grid"].append({key: result[key] for key in ("learning_rate", "epoch", "validation", "test")}
                                | {"inner_dim": inner})
            if better(task, result["validation"], best["validation"]):
                best.update(validation=result["validation"], inner_dim=inner)
        chosen.update(mlet_rate=best["learning_rate"], mlet_inner_dim=best["inner_dim"], mlet_grid=best["grid"])
    inner = chosen["mlet_inner_dim"]
    for dim in map(int, FLAGS.mlet_dims):
        result, model = train(task, splits, counts, mlet(dim, inner), optimizer, chosen["mlet_rate"], seed)
        out["mlet"][dim] = summary(result, total_ids * dim, training_parameters=total_ids * inner + 2 * inner * dim,
                                   inner_dim=inner, serving_bytes=serving_bytes(model) if seed == 0 else None)
    return out


def pep_pruning_setup(optimizer):
    """(the optimizer of the pruning phase, PEP's threshold_scale): CounterSGD trains the thresholds
    with Adam (its dense_optimizer pairing); Adagrad trains them scaled."""
    if optimizer == "counter_sgd":
        return "counter_sgd_adam", 1.0
    return optimizer, FLAGS.pep_adagrad_threshold_scale


def retrain_ticket(task, optimizer, splits, counts, learning_rate, seed, masks_and_initial):
    """A ``MaskedEmbedding`` per table (``masks_and_initial``: name -> (mask, initial values)), trained
    ``--retrain_epochs``; returns the run's summary."""
    dim = FLAGS.pep_dim

    def make(n, name):
        return MaskedEmbedding.from_mask(*masks_and_initial[name], name=name)

    result, model = train(task, splits, counts, make, optimizer, learning_rate, seed, epochs=FLAGS.retrain_epochs)
    parameters = sum(int(np.count_nonzero(mask)) for mask, _ in masks_and_initial.values())
    return summary(result, parameters, sparsity=1 - parameters / (sum(counts) * dim),
                   serving_bytes=serving_bytes(model) if seed == 0 else None)


def measure_pep(task, optimizer, splits, counts, learning_rate, directory, seed):
    """Pruning runs from each threshold initialisation, then one retrain per target reached; and, for
    reference, the magnitude ticket (the full model's largest entries) and the frequency ticket (each id's
    first columns, more for frequent ids), retrained the same way."""
    dim = FLAGS.pep_dim
    targets = [float(t) for t in FLAGS.pep_targets]
    pruning_optimizer, threshold_scale = pep_pruning_setup(optimizer)
    pruning = {}
    # Mildest (most negative) first: a target's ticket comes from the mildest run that reached it.
    for init in sorted(map(float, FLAGS.pep_threshold_inits)):
        run_dir = os.path.join(directory, f"{task}-{optimizer}-seed{seed}-init{init:g}")
        callback = PEPSparsityCallback(targets, run_dir, every_n_batches=FLAGS.pep_every_n_batches,
                                       rewind_epochs=FLAGS.rewind_epochs)

        def make(n, name, init=init):
            return PEPEmbedding(n, dim, threshold_init=init, threshold_scale=threshold_scale, name=name)

        result, _ = train(task, splits, counts, make, pruning_optimizer, learning_rate, seed, callbacks=[callback])
        nonzero = sum(layer.inference_parameter_count() for layer in callback.layers)
        pruning[f"{init:g}"] = summary(result, nonzero, threshold_init=init, directory=run_dir,
                                       history=callback.history,
                                       reached={f"{t:g}": point for t, point in callback.reached.items()})
    retrained, magnitude = {}, {}
    for target in targets:
        source = next((run for run in pruning.values() if f"{target:g}" in run["reached"]), None)
        if source is not None:
            tickets = {name: (np.load(mask_path(source["directory"], name, target)),
                              np.load(initial_embeddings_path(source["directory"], name))) for name in ("user", "item")}
            retrained[f"{target:g}"] = retrain_ticket(task, optimizer, splits, counts, learning_rate, seed, tickets)
            retrained[f"{target:g}"].update(target_sparsity=target, threshold_init=source["threshold_init"])
    rewind = RewindTables(("user", "item"), FLAGS.rewind_epochs)
    _, full = train(task, splits, counts, plain(dim), optimizer, learning_rate, seed, callbacks=[rewind])
    trained = {name: full.get_layer(name).embeddings.numpy() for name in ("user", "item")}
    magnitudes = np.concatenate([np.abs(table).ravel() for table in trained.values()])
    for target in targets:
        cut = np.quantile(magnitudes, target)
        tickets = {name: (np.abs(table) > cut, rewind.tables[name]) for name, table in trained.items()}
        magnitude[f"{target:g}"] = retrain_ticket(task, optimizer, splits, counts, learning_rate, seed, tickets)
        magnitude[f"{target:g}"]["target_sparsity"] = target
    train_part = splits[task][0]
    id_counts = {"user": np.bincount(train_part["user_id"], minlength=counts[0]),
                 "item": np.bincount(train_part["item_id"], minlength=counts[1])}
    frequency = {}
    for target in targets:
        tickets = {name: (frequency_mask(id_counts[name], dim, target, FLAGS.frequency_exponent), rewind.tables[name])
                   for name in id_counts}
        frequency[f"{target:g}"] = retrain_ticket(task, optimizer, splits, counts, learning_rate, seed, tickets)
        frequency[f"{target:g}"].update(target_sparsity=target, exponent=FLAGS.frequency_exponent)
    for run in pruning.values():
        del run["directory"]
    return {"pruning": pruning, "retrained": retrained, "magnitude": magnitude, "frequency": frequency,
            "pruning_optimizer": pruning_optimizer, "threshold_scale": threshold_scale}


MEASURED = ("validation", "test", "parameters", "sparsity")


def over_seeds(runs):
    """One seed-merged tree from per-seed trees of one shape: each run's ``validation``, ``test``,
    ``parameters`` and ``sparsity`` become their mean over the seeds (None when a seed has none), with
    ``<name>_seeds`` listing them; ``epoch`` lists each seed's; the rest (``serving_bytes`` included) is
    seed 0's. A run missing from some seeds (a PEP target not reached) is merged over the seeds that have it."""
    first = runs[0]
    if not isinstance(first, dict):
        return first
    if "test" not in first:
        keys = [key for key in first] + [key for run in runs[1:] for key in run if key not in first]
        return {key: over_seeds([run[key] for run in runs if key in run]) for key in dict.fromkeys(keys)}
    merged = dict(first, seeds=len(runs), epoch=[run["epoch"] for run in runs])
    for key in MEASURED:
        values = [run.get(key) for run in runs]
        if key in first:
            merged[f"{key}_seeds"] = values
            merged[key] = None if any(value is None for value in values) else float(np.mean(values))
    return merged


def target_checks(task, results):
    """The issue's targets, per optimizer (seed means): MLET at d <= 8 as good as plain d = 32; the
    retrained PEP ticket's AUC drop from the full model at >= 90 % and >= 80 % sparsity (CTR), and the
    same drops of the frequency ticket."""
    checks = {}
    for optimizer, result in results.items():
        reference = result["plain"][TUNED_PLAIN_DIM]["test"]
        small = [dim for dim, run in result["mlet"].items() if dim <= 8 and not better(task, reference, run["test"])]
        checks[optimizer] = {"plain_d32": reference, "mlet_matches_plain_d32_at": min(small) if small else None}
        if "pep" in result:
            full = result["plain"][FLAGS.pep_dim]["test"]
            for kind, prefix in (("retrained", "pep"), ("frequency", "frequency_ticket")):
                for sparsity, allowed in PEP_TARGETS.items():
                    runs = [run for run in result["pep"][kind].values()
                            if run["sparsity"] >= sparsity and run["test"] is not None]
                    drop = None if not runs else round(full - max(run["test"] for run in runs), 4)
                    checks[optimizer][f"{prefix}_auc_drop_at_{sparsity * 100:.0f}_percent"] = drop
                    met = drop is not None and drop <= allowed
                    checks[optimizer][f"{prefix}_{sparsity * 100:.0f}_percent_met"] = met
    return checks


def plot(results, dataset, path_prefix):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = {"rating": "test RMSE (lower is better)", "ctr": "test AUC"}
    colors = {"counter_sgd": "tab:blue", "adagrad": "tab:orange"}
    paths = []
    for figure_name in ("mlet", "pep"):
        tasks = [task for task in TASKS if figure_name == "mlet" or task in FLAGS.pep_tasks]
        figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
        for axis, task in zip(axes[0], tasks):
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
                              label=f"MLET d={dims[0]}..{dims[-1]}, {label}")
                    continue
                markers = {"retrained": "^--", "magnitude": "v:", "frequency": "D-."}
                for kind, name in TICKET_KINDS.items():
                    marker = markers[kind]
                    runs = [run for run in result["pep"][kind].values() if run["test"] is not None]
                    axis.plot([run["parameters"] for run in runs], [run["test"] for run in runs], marker, color=color,
                              label=f"{name}, {label}")
            axis.set_xscale("symlog", linthresh=1000)
            axis.set_xlabel("embedding parameters at inference")
            axis.set_ylabel(names[task])
            axis.set_title(f"{dataset}, {task} (mean of {FLAGS.seeds} seeds)")
            axis.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7)
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
        print(f"\n{task}: test {metric_name}, mean of {FLAGS.seeds} seeds (lr chosen on validation, epochs per seed)\n")
        print("| model | embedding params (inference) | " + " | ".join(LABELS[o] for o in optimizers) + " |")
        print("|---|---|" + "---|" * len(optimizers))
        first = results[task][optimizers[0]]
        rows = [("biases only", 0, lambda r: r["biases_only"])]
        rows += [(f"plain d={d}", first["plain"][d]["parameters"], lambda r, d=d: r["plain"][d])
                 for d in sorted(first["plain"])]
        rows += [(f"MLET d={d}", first["mlet"][d]["parameters"], lambda r, d=d: r["mlet"][d])
                 for d in sorted(first["mlet"])]
        for name, parameters, pick in rows:
            cells = [f"{cell(pick(results[task][o])['test'])} (lr {pick(results[task][o])['learning_rate']:g}, "
                     f"ep {pick(results[task][o])['epoch']})" for o in optimizers]
            print(f"| {name} | {parameters:,.0f} | " + " | ".join(cells) + " |")
        for optimizer in optimizers:
            pep = results[task][optimizer].get("pep")
            if pep is None:
                continue
            print(f"\nPEP d={FLAGS.pep_dim}, {LABELS[optimizer]} ({task}, test {metric_name}; pruning with "
                  f"{pep['pruning_optimizer']}, threshold_scale {pep['threshold_scale']:g}):\n")
            print("| phase | threshold init | target | non-zero params | sparsity | test | epochs |")
            print("|---|---|---|---|---|---|---|")
            total = sum(results["counts"]) * FLAGS.pep_dim
            for run in pep["pruning"].values():
                print(f"| pruning | {run['threshold_init']:g} | | {run['parameters']:,.0f} | "
                      f"{1 - run['parameters'] / total:.3f} | {cell(run['test'])} | {run['epoch']} |")
            for kind in TICKET_KINDS:
                for run in pep[kind].values():
                    print(f"| {kind} ticket | {run.get('threshold_init', '')} | {run['target_sparsity']:g} | "
                          f"{run['parameters']:,.0f} | {run['sparsity']:.3f} | {cell(run['test'])} | {run['epoch']} |")


def main(argv):
    del argv
    bench_flags.apply_quick({"seeds": 1, "epochs": 1, "retrain_epochs": 1, "plain_dims": ["32"], "mlet_dims": ["8"],
                             "mlet_inner_dims": ["16"], "optimizers": ["counter_sgd"], "pep_threshold_inits": ["-3"],
                             "pep_targets": ["0.5"]})
    if not 0 <= FLAGS.rewind_epochs <= FLAGS.epochs:
        raise app.UsageError(f"--rewind_epochs must be in [0, --epochs = {FLAGS.epochs}]; got {FLAGS.rewind_epochs}.")
    started = time.perf_counter()
    dataset, splits, num_users, num_items = load_splits()
    counts = (num_users, num_items)
    results = {"dataset": dataset, "counts": counts, "seeds": FLAGS.seeds, "epochs": FLAGS.epochs,
               "retrain_epochs": FLAGS.retrain_epochs, "rewind_epochs": FLAGS.rewind_epochs,
               "batch_size": FLAGS.batch_size, "grids": GRIDS,
               "pep_dim": FLAGS.pep_dim, "pep_targets": {f"{k:g}": v for k, v in PEP_TARGETS.items()}}
    with tempfile.TemporaryDirectory() as directory:
        for task in TASKS:
            results[task] = {}
            for optimizer in FLAGS.optimizers:
                task_started = time.perf_counter()
                chosen, per_seed = {}, []
                for seed in range(FLAGS.seeds):
                    result = measure_plain_and_mlet(task, optimizer, splits, counts, seed, chosen)
                    if task in FLAGS.pep_tasks:
                        result["pep"] = measure_pep(task, optimizer, splits, counts, chosen["plain_rate"], directory,
                                                    seed)
                    per_seed.append(result)
                    print(f"{task} / {optimizer} / seed {seed}: {time.perf_counter() - task_started:.0f} s", flush=True)
                results[task][optimizer] = over_seeds(per_seed)
                results[task][optimizer]["chosen"] = chosen
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
