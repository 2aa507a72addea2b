"""Model quality per optimizer: rating RMSE, CTR AUC and retrieval recall@100, overall and by id frequency.

Run: `.venv/bin/python benchmarks/quality.py` (part of `make bench`; `--quick`: synthetic data of
20,000 ratings, 1 epoch, 1 seed, 1 learning rate). Writes `benchmarks/results/quality.json`,
`quality_curves_<dataset>.png` (validation metric versus step) and `quality_buckets_<dataset>.png`.
The data sets are measured side by side in subprocesses (`--workers`).

Data: MovieLens 100K (`tf_freqsgd.data.load_movielens("ml-100k", --data_dir)`, skipped with a note
when its files are absent) and the built-in synthetic Zipf set ("synthetic", MovieLens 100K's
sizes). Each set is split 80/10/10 at random with a fixed seed (`SPLIT_SEED`), the same split
for every optimizer and seed. Tasks (d = 64 everywhere, the width of the memory target):

* `rating`: the ranking model of `tf_freqsgd.models.ranking` (user and item embeddings, an MLP
  head 2d -> 256 -> 64 -> 1) predicting the rating, mean squared error over the batch; metric test
  RMSE (lower is better).
* `ctr`: the same model on the CTR view (rating 3 dropped, positive above 3), sigmoid
  cross-entropy averaged over the batch; metric test AUC.
* `ctr_mf`: the CTR view with logistic matrix factorisation (`tf_freqsgd.models.matrix_factorization`:
  ``logit = <u, v> + b_u + b_i``), whose parameters are all embedding rows, so that the optimizers
  differ only in their treatment of embeddings; `ctr`'s MLP head adds dense weights, which every
  example updates, and which the SGD family trains with the embeddings' learning rate.
* `retrieval`: the TFRS two-tower model of `tf_freqsgd.models.retrieval` (one embedding per tower,
  in-batch softmax over all ratings as positives, loss summed over the batch); metric test recall@100:
  the share of test (user, item) pairs whose item is among the user's 100 best-scored items of the
  whole catalogue.

Protocol, the same for every optimizer (SGD, Adagrad and Adam are tf_keras's legacy, sparse
optimizers; FrequencySGD's frequencies are counted from the training split): a learning-rate grid
of the same size (`GRIDS`, points a factor of 3 apart around values that measured well), each
point trained with seed 0 for a fixed number of epochs, the validation metric measured every half
epoch. A run's result is its best validation point (early stopping: the test
metrics are measured with the weights of that point); the rate whose run has the best one is
chosen, and seeds 1, 2, ... train at that rate. Test metrics are the mean ± sample std over all
seeds at the chosen rate (the seed changes the initialisation and the batch order). Learning
curves: the validation metric against the step, mean over seeds.

Rare ids: items ranked by their number of training interactions (ties by id); **head** = the most
frequent items that together hold the first 50% of the training interactions, **torso** = the
next ones up to 80%, **tail** = the rest (the least frequent items, holding the last 20%, and items
never seen in training). Test examples are bucketed by their item, and each bucket's metric
reported per optimizer.

Memory: `tf_freqsgd.optimizer_state_bytes` of each trained model's optimizer, in total and per
row of the item tables.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time

from absl import app, flags

# tf_keras (Keras 2) as tf.keras, chosen before TensorFlow is imported: TFRS, TFRA and the tf_keras
# optimizers compared here need it.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tf_freqsgd  # noqa: E402
import numpy as np
import tensorflow as tf

import bench_flags  # noqa: E402  (beside this script)
import ctr_harness  # noqa: E402  (beside this script)
from tf_freqsgd.data import ctr_view, load_movielens, train_val_test_split
from tf_freqsgd.evaluation import auc
from tf_freqsgd.models import matrix_factorization
from tf_freqsgd.models.ranking import RankingModel
from tf_freqsgd.models.ranking import label_key as ranking_label_key
from tf_freqsgd.models.retrieval import RetrievalModel
from tf_freqsgd.models.training import OPTIMIZERS, fit_resumable, known_frequencies, make_optimizer

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SPLIT_SEED = 0
BUCKET_SHARES = (0.5, 0.8)  # cumulative shares of training interactions closing head and torso
BUCKETS = ("head", "torso", "tail")
RECALL_K = 100

# Learning-rate grids, the same size for every optimizer, points a factor of 3 apart, placed where a
# 7-point sweep (`--grid=wide`, seed 0, validation) measured well. Retrieval's (loss summed over
# in-batch negatives) are per data set: there Adagrad's best rate is 0.03 on MovieLens 100K and above
# 2.7 on the synthetic set. Data sets without grids of their own take MovieLens 100K's.
_SGD_FAMILY = ("sgd", "counter_sgd", "counter_sgd_adam", "frequency_sgd")
_ADAGRAD_FAMILY = ("adagrad", "rowwise_adagrad_counter")


def _grids(sgd, adagrad, adam, rowwise=None):
    grids = {name: sgd for name in _SGD_FAMILY}
    grids.update({name: adagrad for name in _ADAGRAD_FAMILY}, adam=adam)
    if rowwise:
        grids["rowwise_adagrad_counter"] = rowwise
    return grids


GRIDS = {
    "rating": _grids(sgd=[0.033, 0.1, 0.3, 0.9], adagrad=[0.033, 0.1, 0.3, 0.9], adam=[0.001, 0.003, 0.009, 0.027]),
    "ctr": _grids(sgd=[0.3, 0.9, 2.7, 8.1], adagrad=[0.1, 0.3, 0.9, 2.7], adam=[0.001, 0.003, 0.009, 0.027]),
    "ctr_mf": _grids(sgd=[3.3, 10.0, 30.0, 90.0], adagrad=[1.1, 3.3, 10.0, 30.0], adam=[0.0011, 0.0033, 0.01, 0.03]),
    "retrieval": {
        "ml-100k": _grids(sgd=[0.011, 0.033, 0.1, 0.3], adagrad=[0.011, 0.033, 0.1, 0.3],
                          adam=[0.0003, 0.001, 0.003, 0.009], rowwise=[2.7, 8.1, 24.0, 73.0]),
        "synthetic": dict(_grids(sgd=[0.011, 0.033, 0.1, 0.3], adagrad=[0.9, 2.7, 8.1, 24.0],
                                 adam=[0.0003, 0.001, 0.003, 0.009], rowwise=[2.7, 8.1, 24.0, 73.0]),
                          sgd=[0.033, 0.1, 0.3, 0.9]),
    },
}
OPTIMIZER_LABELS = {"sgd": "SGD", "adagrad": "Adagrad", "adam": "Adam", "counter_sgd": "CounterSGD",
                    "counter_sgd_adam": "CounterSGD + Adam (dense)",
                    "frequency_sgd": "FrequencySGD", "rowwise_adagrad_counter": "RowwiseAdagradCounter"}

flags.DEFINE_list("datasets", ["ml-100k", "synthetic"], "Data sets: ml-100k (read from --data_dir) and synthetic.")
flags.DEFINE_string("data_dir", ctr_harness.ML100K_DIR, "MovieLens 100K's directory (u.data, u.item).")
flags.DEFINE_integer("synthetic_ratings", None, "Ratings of the synthetic data set (default: MovieLens 100K's "
                     "100,000).")
flags.DEFINE_list("tasks", list(GRIDS), f"Tasks, of {list(GRIDS)}.")
flags.DEFINE_list("optimizers", list(OPTIMIZERS), "Optimizers, by the examples' names.")
flags.DEFINE_integer("seeds", 3, "Seeds at the chosen learning rate (seed 0 is the grid's run).")
flags.DEFINE_enum("grid", "tuned", ["tuned", "wide"], "tuned: GRIDS; wide: 7 points around each grid's centre.")
flags.DEFINE_integer("grid_points", None, "Use only this many points of each grid, nearest its centre.")
flags.DEFINE_integer("dim", 64, "Embedding width.")
flags.DEFINE_integer("ranking_epochs", 5, "Epochs of the rating and CTR models.")
flags.DEFINE_integer("ranking_batch_size", 256, "Batch size of the rating and CTR models.")
flags.DEFINE_integer("retrieval_epochs", 3, "Epochs of the retrieval model.")
flags.DEFINE_integer("retrieval_batch_size", 1024, "Batch size of the retrieval model (in-batch negatives).")
flags.DEFINE_integer("evals_per_epoch", 2, "Validation points of the learning curves per epoch.")
flags.DEFINE_integer("workers", 2, "Processes measuring the data sets side by side, each on one TensorFlow "
                     "thread (the small models' steps are mostly single-threaded); 1: all in this process.")
flags.DEFINE_integer("threads", 0, "TensorFlow's intra- and inter-op threads; 0 for its default.")
flags.DEFINE_string("output_dir", RESULTS_DIR, "Where the JSON and PNG files go.")
FLAGS = flags.FLAGS

# Forwarded to each data set's worker process.
WORKER_FLAGS = ("data_dir", "synthetic_ratings", "tasks", "optimizers", "seeds", "grid", "grid_points", "dim",
                "ranking_epochs", "ranking_batch_size", "retrieval_epochs", "retrieval_batch_size", "evals_per_epoch")


# ---- Frequency buckets. ----


def frequency_buckets(train_item_ids, num_items, shares=BUCKET_SHARES):
    """Bucket index per item (0 head, 1 torso, 2 tail; see the module docstring) and a summary."""
    counts = np.bincount(np.asarray(train_item_ids), minlength=num_items)
    order = np.argsort(-counts, kind="stable")
    share_before = (np.cumsum(counts[order]) - counts[order]) / counts.sum()
    buckets = np.empty(num_items, np.int64)
    buckets[order] = np.searchsorted(shares, share_before, side="right")
    summary = {}
    for index, name in enumerate(BUCKETS):
        members = counts[buckets == index]
        summary[name] = {"items": int(members.size), "train_share": float(members.sum() / counts.sum()),
                         "min_train_count": int(members.min()) if members.size else None,
                         "max_train_count": int(members.max()) if members.size else None}
    return buckets, summary


# ---- Tasks: data, model, training and metric. ----


def _features(part, keys=("user_id", "item_id")):
    return {key: part[key] for key in keys}


class Task:
    """One model and metric on one data set's split; subclasses define the model."""

    name = metric = None
    higher_is_better = True

    def __init__(self, splits, num_users, num_items):
        self.train, self.validation, self.test = splits
        self.num_users, self.num_items = num_users, num_items
        self.buckets, self.bucket_summary = frequency_buckets(self.train["item_id"], num_items)

    @property
    def epochs(self):
        return FLAGS.ranking_epochs

    @property
    def batch_size(self):
        return FLAGS.ranking_batch_size

    @property
    def steps_per_epoch(self):
        return math.ceil(len(self.train["item_id"]) / self.batch_size)

    def id_tables(self, model):
        """(layer, training ids, rows) of each id table; models with `user_embedding` and
        `item_embedding` (the ranking and retrieval models) by default."""
        return [(model.user_embedding, self.train["user_id"], self.num_users),
                (model.item_embedding, self.train["item_id"], self.num_items)]

    def compile(self, model, optimizer):
        model.compile(optimizer=optimizer)

    def better(self, a, b):
        """Whether metric value a beats b (NaN never does)."""
        if not np.isfinite(a):
            return False
        return not np.isfinite(b) or (a > b if self.higher_is_better else a < b)

    def train_model(self, optimizer_name, learning_rate, seed, callbacks):
        """A model trained with the optimizer, its training seconds."""
        model = self.build(seed)
        frequencies = (known_frequencies(self.id_tables(model), self.steps_per_epoch)
                       if optimizer_name == "frequency_sgd" else None)
        self.compile(model, make_optimizer(optimizer_name, learning_rate, frequencies=frequencies))
        started = time.perf_counter()
        fit_resumable(model, self.training_features(), epochs=self.epochs, batch_size=self.batch_size, seed=seed,
                      label=self.label_key, callbacks=callbacks, verbose=0)
        return model, time.perf_counter() - started

    def evaluate(self, model, part, by_bucket=False):
        """The metric on `part`, and with `by_bucket` a dict of it per frequency bucket."""
        values = self.per_example(model, part)
        overall = self.aggregate(part, values)
        if not by_bucket:
            return overall
        item_bucket = self.buckets[part["item_id"]]
        per_bucket = {}
        for index, name in enumerate(BUCKETS):
            mask = item_bucket == index
            subset = {key: value[mask] for key, value in part.items()}
            per_bucket[name] = self.aggregate(subset, values[mask]) if mask.any() else None
        return overall, per_bucket


class RankingTask(Task):
    """`tf_freqsgd.models.ranking.RankingModel`: user and item embeddings, an MLP head."""

    def build(self, seed):
        tf.keras.utils.set_random_seed(seed)
        model = RankingModel(self.num_users, self.num_items, task=self.name, dim=FLAGS.dim, seed=seed)
        model.build_tables()
        return model

    @property
    def label_key(self):
        return ranking_label_key(self.name)

    def training_features(self):
        return {**_features(self.train), self.label_key: self.train[self.label_key]}

    def outputs(self, model, part):
        return model(_features(part)).numpy().astype(np.float64)


class RatingTask(RankingTask):
    name, metric, higher_is_better = "rating", "rmse", False

    def per_example(self, model, part):
        return np.square(self.outputs(model, part) - part["rating"])

    def aggregate(self, part, squared_errors):
        return float(np.sqrt(np.mean(squared_errors)))


class CtrTask(RankingTask):
    name, metric = "ctr", "auc"

    def per_example(self, model, part):
        return self.outputs(model, part)

    def aggregate(self, part, logits):
        labels = part["label"]
        if not np.isfinite(logits).all():
            return float("nan")
        if labels.min() == labels.max():
            return None  # AUC needs both classes
        return auc(labels, logits)


class MatrixFactorizationCtrTask(CtrTask):
    """`tf_freqsgd.models.matrix_factorization`: every parameter an embedding row (vectors and
    per-id biases), so the optimizers differ only in how they treat embeddings."""

    name = "ctr_mf"
    label_key = "label"

    def build(self, seed):
        return matrix_factorization(self.num_users, self.num_items, FLAGS.dim, seed=seed)

    def id_tables(self, model):
        users, items = self.train["user_id"], self.train["item_id"]
        return [(model.get_layer(name), ids, count) for name, ids, count in (
            ("user", users, self.num_users), ("item", items, self.num_items),
            ("user_bias", users, self.num_users), ("item_bias", items, self.num_items))]

    def compile(self, model, optimizer):
        model.compile(optimizer=optimizer, loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))

    def training_features(self):
        return {**_features(self.train), "label": self.train["label"]}


class RetrievalTask(Task):
    name, metric = "retrieval", f"recall@{RECALL_K}"
    label_key = None

    @property
    def epochs(self):
        return FLAGS.retrieval_epochs

    @property
    def batch_size(self):
        return FLAGS.retrieval_batch_size

    def build(self, seed):
        tf.keras.utils.set_random_seed(seed)
        model = RetrievalModel(self.num_users, self.num_items, dim=FLAGS.dim, seed=seed)
        model.build_tables()
        return model

    def training_features(self):
        return _features(self.train)

    def per_example(self, model, part):
        """1 where the pair's item is among the user's `RECALL_K` best items, else 0."""
        _, top_items = model.recommend(part["user_id"], RECALL_K)
        return (top_items.numpy() == part["item_id"][:, None]).any(axis=1).astype(np.float64)

    def aggregate(self, part, hits):
        return float(np.mean(hits))


TASKS = {"rating": RatingTask, "ctr": CtrTask, "ctr_mf": MatrixFactorizationCtrTask, "retrieval": RetrievalTask}


class ValidationCurve(tf.keras.callbacks.Callback):
    """The validation metric at step 0, every `every` steps and at the end of training, and the
    weights at the best of these points (`best_weights`, restored for the test metrics)."""

    def __init__(self, task, every):
        super().__init__()
        self.task, self.every = task, every
        self.points, self.step = [], 0
        self.best, self.best_weights = float("nan"), None

    def record(self):
        value = self.task.evaluate(self.model, self.task.validation)
        value = float("nan") if value is None else value
        self.points.append([self.step, value])
        if self.step > 0 and self.task.better(value, self.best):
            self.best, self.best_weights = value, self.model.get_weights()

    def on_train_begin(self, logs=None):
        self.record()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            self.record()

    def on_train_end(self, logs=None):
        if self.points[-1][0] != self.step:
            self.record()


# ---- The protocol. ----


def grid_of(task_name, optimizer_name, dataset_name):
    grids = GRIDS[task_name]
    if "ml-100k" in grids:  # per data set
        grids = grids.get(dataset_name, grids["ml-100k"])
    grid = grids[optimizer_name]
    if FLAGS.grid == "wide":
        centre = grid[len(grid) // 2]
        grid = [float(f"{centre * 3.0 ** k:.2g}") for k in range(-3, 4)]
    if FLAGS.grid_points:
        centre = len(grid) // 2
        nearest = sorted(range(len(grid)), key=lambda i: (abs(i - centre), i))[:FLAGS.grid_points]
        grid = [grid[i] for i in sorted(nearest)]
    return grid


def one_run(task, optimizer_name, learning_rate, seed):
    """Trains once; returns the validation curve, the test metrics and the optimizer state."""
    curve = ValidationCurve(task, max(1, task.steps_per_epoch // FLAGS.evals_per_epoch))
    try:  # legacy SGD's NaNs stop the run at once, as tf_freqsgd's optimizers' checks do
        model, seconds = task.train_model(optimizer_name, learning_rate, seed,
                                          [curve, tf.keras.callbacks.TerminateOnNaN()])
    except tf.errors.InvalidArgumentError as error:  # tf_freqsgd's optimizers reject non-finite gradients
        lines = str(error).splitlines()
        why = next((line.strip() for line in lines if "assertion failed" in line), lines[0])
        print(f"    {optimizer_name} lr {learning_rate:g} seed {seed}: diverged ({why[:160]})", flush=True)
        return {"learning_rate": learning_rate, "seed": seed, "diverged": True, "validation": float("nan"),
                "curve": curve.points}
    if curve.best_weights is None:  # no finite validation metric after step 0
        return {"learning_rate": learning_rate, "seed": seed, "diverged": True, "validation": float("nan"),
                "curve": curve.points}
    model.set_weights(curve.best_weights)
    test, test_buckets = task.evaluate(model, task.test, by_bucket=True)
    return {"learning_rate": learning_rate, "seed": seed, "diverged": False, "validation": curve.best,
            "best_step": next(step for step, value in curve.points if value == curve.best),
            "test": test, "test_buckets": test_buckets, "curve": curve.points,
            "train_seconds": seconds, "state_bytes": tf_freqsgd.optimizer_state_bytes(model.optimizer),
            "state_bytes_item_rows": tf_freqsgd.optimizer_state_bytes(model.optimizer, rows=task.num_items)}


def mean_std(values):
    """Mean, sample standard deviation (0 for one value) and count of the values that are not None."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "n": len(values)}


def measure_optimizer(task, optimizer_name, dataset_name):
    """The grid on seed 0, then the other seeds at the rate chosen on validation."""
    grid = grid_of(task.name, optimizer_name, dataset_name)
    grid_runs = [one_run(task, optimizer_name, rate, seed=0) for rate in grid]
    best = grid_runs[0]
    for run in grid_runs[1:]:
        if task.better(run["validation"], best["validation"]):
            best = run
    runs = [best] + [one_run(task, optimizer_name, best["learning_rate"], seed) for seed in range(1, FLAGS.seeds)]
    finished = [run for run in runs if not run["diverged"]]
    chosen = grid.index(best["learning_rate"])
    result = {
        "label": OPTIMIZER_LABELS[optimizer_name],
        "grid": grid,
        "validation_by_learning_rate": [run["validation"] for run in grid_runs],
        "learning_rate": best["learning_rate"],
        "chosen_at_grid_edge": len(grid) > 1 and chosen in (0, len(grid) - 1),
        "diverged_seeds": len(runs) - len(finished),
        "test_values": [run["test"] for run in finished],
        "best_steps": [run["best_step"] for run in finished],
        "test": mean_std([run["test"] for run in finished]),
        "test_buckets": {name: mean_std([run["test_buckets"][name] for run in finished]) for name in BUCKETS},
        "curves": [run["curve"] for run in runs],
        "train_seconds": mean_std([run["train_seconds"] for run in finished]),
    }
    if finished:
        result["state_bytes"] = finished[0]["state_bytes"]
        result["state_bytes_per_item_row"] = finished[0]["state_bytes_item_rows"] / task.num_items
    return result


def load_dataset(name):
    """(MovieLens record, None) or (None, why it was skipped)."""
    if name == "synthetic":
        return load_movielens("synthetic", num_ratings=FLAGS.synthetic_ratings, seed=0), None
    try:
        return load_movielens(name, FLAGS.data_dir), None
    except FileNotFoundError as error:
        return None, str(error)


def task_splits(task_name, ratings):
    view = ctr_view(ratings) if task_name.startswith("ctr") else ratings
    return train_val_test_split(view, seed=SPLIT_SEED)


# ---- Output. ----


def plot_curves(dataset, tasks, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for axis, (task_name, task) in zip(axes[0], tasks.items()):
        for optimizer_name, result in task["optimizers"].items():
            curves = [np.asarray(curve, np.float64) for curve in result["curves"]]
            length = min(len(curve) for curve in curves)
            steps = curves[0][:length, 0]
            values = np.nanmean([curve[:length, 1] for curve in curves], axis=0)
            axis.plot(steps, values, marker=".",
                      label=f"{OPTIMIZER_LABELS[optimizer_name]} ({result['learning_rate']:g})")
        axis.set_xlabel("training step")
        axis.set_ylabel(f"validation {task['metric']}")
        axis.set_title(f"{dataset}: {task_name}")
        # Zoom past the first point (the untrained models), where the optimizers differ.
        later = [point[1] for result in task["optimizers"].values() for curve in result["curves"]
                 for point in curve[1:] if point[1] is not None and np.isfinite(point[1])]
        if later:
            low, high = np.percentile(later, [5, 100]) if task["higher_is_better"] else np.percentile(later, [0, 95])
            axis.set_ylim(low - 0.05 * (high - low) - 1e-4, high + 0.05 * (high - low) + 1e-4)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_buckets(dataset, tasks, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for axis, (task_name, task) in zip(axes[0], tasks.items()):
        names = list(task["optimizers"])
        width = 0.8 / len(names)
        for i, optimizer_name in enumerate(names):
            buckets = task["optimizers"][optimizer_name]["test_buckets"]
            means = [buckets[b]["mean"] if buckets[b] else np.nan for b in BUCKETS]
            stds = [buckets[b]["std"] if buckets[b] else 0.0 for b in BUCKETS]
            axis.bar(np.arange(len(BUCKETS)) + (i - (len(names) - 1) / 2) * width, means, width, yerr=stds,
                     label=OPTIMIZER_LABELS[optimizer_name])
        axis.set_xticks(range(len(BUCKETS)), BUCKETS)
        axis.set_ylabel(f"test {task['metric']}")
        axis.set_title(f"{dataset}: {task_name} by item frequency")
        values = [task["optimizers"][o]["test_buckets"][b]["mean"] for o in names for b in BUCKETS
                  if task["optimizers"][o]["test_buckets"][b]]
        if values:  # bars start near the lowest value: the differences are small against the values
            spread = max(values) - min(values)
            axis.set_ylim(max(0.0, min(values) - spread - 1e-3), max(values) + 0.3 * spread + 1e-3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_tables(results):
    for dataset, entry in results["datasets"].items():
        print(f"\n{dataset}: test metric, mean ± std over {results['settings']['seeds']} seeds (lr)\n")
        tasks = entry["tasks"]
        print("| optimizer | " + " | ".join(f"{t} {tasks[t]['metric']}" for t in tasks) + " |")
        print("|---|" + "---|" * len(tasks))
        for optimizer_name in FLAGS.optimizers:
            cells = []
            for task in tasks.values():
                result = task["optimizers"][optimizer_name]
                test = result["test"]
                cells.append(f"{test['mean']:.4f} ± {test['std']:.4f} ({result['learning_rate']:g})" if test
                             else "diverged")
            print(f"| {OPTIMIZER_LABELS[optimizer_name]} | " + " | ".join(cells) + " |")


def finite_or_none(value):
    """`value` with every NaN or infinity replaced by None (strict JSON has neither)."""
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write(results):
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    with open(os.path.join(FLAGS.output_dir, "quality.json"), "w") as f:
        json.dump(finite_or_none(results), f, indent=1)


def measure_dataset(dataset_name, results, started):
    """Measures every task on one data set into `results` (written after each task)."""
    record, why = load_dataset(dataset_name)
    if record is None:
        print(f"{dataset_name}: skipped ({why})", flush=True)
        results["skipped"][dataset_name] = why
        return
    entry = {"name": record.name, "source": record.source, "num_users": record.num_users,
             "num_items": record.num_items, "num_ratings": len(record.ratings["rating"]), "tasks": {}}
    results["datasets"][dataset_name] = entry
    for task_name in FLAGS.tasks:
        task = TASKS[task_name](task_splits(task_name, record.ratings), record.num_users, record.num_items)
        print(f"{record.name} {task_name}: {len(task.train['item_id'])} train / {len(task.validation['item_id'])} "
              f"validation / {len(task.test['item_id'])} test, {task.steps_per_epoch} steps an epoch", flush=True)
        entry["tasks"][task_name] = {
            "metric": task.metric, "higher_is_better": task.higher_is_better, "epochs": task.epochs,
            "batch_size": task.batch_size, "steps_per_epoch": task.steps_per_epoch, "buckets": task.bucket_summary,
            "test_examples_per_bucket": np.bincount(task.buckets[task.test["item_id"]], minlength=3).tolist(),
            "optimizers": {}}
        for optimizer_name in FLAGS.optimizers:
            result = measure_optimizer(task, optimizer_name, dataset_name)
            entry["tasks"][task_name]["optimizers"][optimizer_name] = result
            test = result["test"]
            shown = f"{test['mean']:.4f} ± {test['std']:.4f}" if test else "diverged"
            print(f"  {OPTIMIZER_LABELS[optimizer_name]}: lr {result['learning_rate']:g} of {result['grid']}, "
                  f"test {task.metric} {shown} ({time.time() - started:.0f} s so far)", flush=True)
        write(results)


def relay(prefix, stream):
    for line in stream:
        print(f"[{prefix}] {line}", end="", flush=True)


def measure_in_workers(results):
    """One subprocess per data set, side by side, each on one TensorFlow thread; their JSON merged
    into `results`."""
    processes = []
    for dataset_name in FLAGS.datasets:
        directory = os.path.join(FLAGS.output_dir, "workers", dataset_name)
        command = [sys.executable, os.path.abspath(__file__), f"--datasets={dataset_name}", f"--output_dir={directory}",
                   "--workers=1", "--threads=1"]
        for name in WORKER_FLAGS:
            value = FLAGS[name].value
            if value is not None:
                command.append(f"--{name}={','.join(value) if isinstance(value, list) else value}")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        thread = threading.Thread(target=relay, args=(dataset_name, process.stdout), daemon=True)
        thread.start()
        processes.append((dataset_name, directory, process, thread))
    failed = []
    for dataset_name, directory, process, thread in processes:
        process.wait()
        thread.join()
        if process.returncode:
            failed.append(f"{dataset_name} (exit status {process.returncode})")
            continue
        with open(os.path.join(directory, "quality.json")) as f:
            measured = json.load(f)
        results["datasets"].update(measured["datasets"])
        results["skipped"].update(measured["skipped"])
    shutil.rmtree(os.path.join(FLAGS.output_dir, "workers"), ignore_errors=True)
    if failed:
        raise RuntimeError(f"quality workers failed: {', '.join(failed)}; see their output above.")


def main(argv):
    del argv
    bench_flags.apply_quick({"datasets": ["synthetic"], "synthetic_ratings": 20_000, "seeds": 1, "grid_points": 1,
                             "ranking_epochs": 1, "retrieval_epochs": 1})
    for name in FLAGS.tasks:
        if name not in TASKS:
            raise ValueError(f"--tasks: unknown task {name!r}; expected some of {list(TASKS)}.")
    for name in FLAGS.optimizers:
        if name not in OPTIMIZERS:
            raise ValueError(f"--optimizers: unknown optimizer {name!r}; expected some of {list(OPTIMIZERS)}.")
    for name in ("seeds", "dim", "ranking_epochs", "retrieval_epochs", "evals_per_epoch", "workers"):
        if FLAGS[name].value < 1:
            raise ValueError(f"--{name} must be at least 1; got {FLAGS[name].value}.")
    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    settings = {key: FLAGS[key].value for key in ("datasets", *WORKER_FLAGS[1:], "workers", "threads")}
    settings.update({"split_seed": SPLIT_SEED, "bucket_shares": BUCKET_SHARES, "recall_k": RECALL_K,
                     "quick": FLAGS.quick})
    results = {"settings": settings, "datasets": {}, "skipped": {}}
    started = time.time()
    if FLAGS.workers > 1 and len(FLAGS.datasets) > 1:
        measure_in_workers(results)
    else:
        for dataset_name in FLAGS.datasets:
            measure_dataset(dataset_name, results, started)
    for dataset_name, entry in results["datasets"].items():
        plot_curves(entry["name"], entry["tasks"], os.path.join(FLAGS.output_dir, f"quality_curves_{dataset_name}.png"))
        plot_buckets(entry["name"], entry["tasks"],
                     os.path.join(FLAGS.output_dir, f"quality_buckets_{dataset_name}.png"))
    results["seconds"] = time.time() - started
    write(results)
    print_tables(results)


if __name__ == "__main__":
    app.run(main)
