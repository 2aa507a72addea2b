"""Model quality per optimizer: rating RMSE, CTR AUC and retrieval recall@100, overall and by id frequency.

Run: `.venv/bin/python benchmarks/quality.py` (part of `make bench`; `--quick`: synthetic data of
20,000 ratings, 1 epoch, 1 seed, 1 learning rate). Writes `benchmarks/results/quality.json`,
`quality_curves_<dataset>.png` (validation metric versus step), `quality_rates_<dataset>.png`
(validation metric versus learning rate) and `quality_buckets_<dataset>.png`.
The data sets are measured side by side in subprocesses (`--workers`).

Data: MovieLens 100K (`tf_freqsgd.data.load_movielens("ml-100k", --data_dir)`, skipped with a note
when its files are absent) and the built-in synthetic Zipf set ("synthetic", MovieLens 100K's
sizes). Each set is split 80/10/10 at random with a fixed seed (`SPLIT_SEED`), the same split
for every optimizer and seed. Tasks (d = 64, the width of the memory target, except the TFRS tutorial's 32):

* `rating`: the ranking model of `tf_freqsgd.models.ranking` (user and item embeddings, an MLP
  head 2d -> 256 -> 64 -> 1) predicting the rating, mean squared error over the batch; metric test
  RMSE (lower is better).
* `ctr`: the same model on the CTR view (rating 3 dropped, positive above 3), sigmoid
  cross-entropy averaged over the batch; metric test AUC.
* `ctr_mf`: the CTR view with logistic matrix factorisation (`tf_freqsgd.models.matrix_factorization`:
  ``logit = <u, v> + b_u + b_i``), whose parameters are all embedding rows, so that the optimizers
  differ only in their treatment of embeddings; `ctr`'s MLP head adds dense weights, which every
  example updates, and which the SGD family trains with the embeddings' learning rate.
* `ctr_big_batch`, `ctr_mf_big_batch`: `ctr` and `ctr_mf` at batch --big_batch_size (8,192) with
  the same epochs, measuring CounterSGD with and without CowClip (`VARIANTS`) and Adam.
* `retrieval`: the TFRS two-tower model of `tf_freqsgd.models.retrieval` (one embedding per tower,
  in-batch softmax over all ratings as positives, loss summed over the batch, batch 1,024); metric
  test recall@100: the share of test (user, item) pairs whose item is among the user's 100
  best-scored items of the whole catalogue.
* `retrieval_tfrs`: the TFRS basic retrieval tutorial's shape (`TfrsTutorialModel`: per tower
  `IntegerLookup` -> `Embedding(32)`, `tfrs.tasks.Retrieval()` with its defaults, batch 8,192,
  3 epochs, `compile`/`fit`); the same metric.
* `retrieval_logq`, `retrieval_tfrs_logq`: the same two with log-Q correction (the logits less the
  log of each item's appearances per training step, counted on the training split).

Protocol, the same for every optimizer (SGD, Adagrad and Adam are tf_keras's legacy, sparse
optimizers; FrequencySGD's frequencies are counted from the training split): a learning-rate grid
of 7 points a factor 10^(1/3) apart (spanning 100x) around a centre per task and optimizer family
(`GRID_CENTRES`), each point trained with seed 0 for a fixed number of epochs, the validation metric
measured every half epoch. A run's result is its best validation point (early stopping: the test
metrics are measured with the weights of that point); the rate whose run has the best one is
chosen, and seeds 1, 2, ... train at that rate. Test metrics are the mean ± sample std over all
seeds at the chosen rate (the seed changes the initialisation and the batch order). Learning
curves: the validation metric against the step, mean over seeds. Robustness (`quality_rates_*.png`):
the widest run of grid rates whose seed-0 validation metric is within 5% of the optimizer's best,
and whether the optimizer's default rate lies in it. `--update` measures some tasks again and keeps
the rest of the existing quality.json.

Rare ids: items ranked by their number of training interactions (ties by id); **head** = the most
frequent items that together hold the first 50% of the training interactions, **torso** = the
next ones up to 80%, **tail** = the rest (the least frequent items, holding the last 20%, and items
never seen in training). Test examples are bucketed by their item, and each bucket's metric
reported per optimizer.

Memory: `tf_freqsgd.optimizer_state_bytes` of each trained model's optimizer, in total and per
row of the item tables.
"""

import inspect
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
import tensorflow_recommenders as tfrs

import bench_flags  # noqa: E402  (beside this script)
import ctr_harness  # noqa: E402  (beside this script)
from tf_freqsgd.data import ctr_view, load_movielens, train_val_test_split
from tf_freqsgd.evaluation import auc
from tf_freqsgd.models import matrix_factorization
from tf_freqsgd.models.ranking import RankingModel
from tf_freqsgd.models.ranking import label_key as ranking_label_key
from tf_freqsgd.models.retrieval import RetrievalModel, counts_logq
from tf_freqsgd.models.training import DENSE_ADAM_RATE, OPTIMIZERS, fit_resumable, id_frequencies, known_frequencies, make_optimizer

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SPLIT_SEED = 0
BUCKET_SHARES = (0.5, 0.8)  # cumulative shares of training interactions closing head and torso
BUCKETS = ("head", "torso", "tail")
RECALL_K = 100
# The big-batch tasks compare CowClip with plain CounterSGD (and Adam, for reference); the TFRS
# tutorial's 8,192 x 8,192 softmax costs ~50 s a run on one core, so it measures the retrieval
# target's baselines (SGD, Adagrad) and CounterSGD with either counting.
BIG_BATCH_OPTIMIZERS = ("adam", "counter_sgd", "counter_sgd_adam", "counter_sgd_cowclip", "counter_sgd_adam_cowclip")
# Settings measured beside the examples' optimizers (`training.OPTIMIZERS`): CowClip (ratio
# --cowclip_ratio, the clip bound `cowclip_min_norm` at its default), and CounterSGD counting presence
# with FBGEMM's `lr / sqrt(c)` (estimate "count"), which occurrence counting's collapse of popular
# rows' rates at batch 8,192 suggested (../shared/notes/retrieval-probe.md).
VARIANTS = {"counter_sgd_cowclip": lambda rate: tf_freqsgd.CounterSGD(rate, cowclip_ratio=FLAGS.cowclip_ratio),
            "counter_sgd_adam_cowclip": lambda rate: tf_freqsgd.CounterSGD(
                rate, cowclip_ratio=FLAGS.cowclip_ratio, dense_optimizer=tf.keras.optimizers.Adam(DENSE_ADAM_RATE)),
            "counter_sgd_presence": lambda rate: tf_freqsgd.CounterSGD(rate, estimate="count", counting="presence")}
ALL_OPTIMIZERS = (*OPTIMIZERS, *VARIANTS)
# The only tasks CowClip runs on: plain CounterSGD on matrix factorisation, CounterSGD with Adam on
# the MLP's dense layers (CowClip's rates are far too large for them).
VARIANT_TASKS = {"counter_sgd_cowclip": ("ctr_mf", "ctr_mf_big_batch"),
                 "counter_sgd_adam_cowclip": ("ctr", "ctr_big_batch")}
TFRS_OPTIMIZERS = ("sgd", "adagrad", "counter_sgd", "counter_sgd_presence")
RECOMMENDED = "counter_sgd"  # the robustness target's optimizer: the package's default one
ROBUST_SHARE = 0.05  # "within 5% of the best" of the robustness target

# Learning-rate grids: the same 7 points for every optimizer, a factor 10^(1/3) apart (so 4
# consecutive points span 10x and the grid 100x), centred on the rate each family measured best.
# Tasks whose loss is summed over the batch (retrieval) want rates ~B times smaller than the averaged
# ones for the SGD family; the Adagrad family is nearly indifferent to the loss's scale. Data sets
# without centres of their own take MovieLens 100K's.
GRID_POINTS = 7
_SGD_FAMILY = ("sgd", "counter_sgd", "counter_sgd_adam", "counter_sgd_presence", "frequency_sgd")
# CowClip bounds each row's gradient to about occurrences x 1e-5 (see --cowclip_ratio): its rates are
# the step per occurrence over 1e-5, at either batch size.
_COWCLIP = {"counter_sgd_cowclip": 10000.0, "counter_sgd_adam_cowclip": 10000.0}
_ADAGRAD_FAMILY = ("adagrad", "rowwise_adagrad_counter")


def _centres(sgd, adagrad, adam, **others):
    centres = {name: sgd for name in _SGD_FAMILY}
    centres.update({name: adagrad for name in _ADAGRAD_FAMILY}, adam=adam)
    centres.update(_COWCLIP, **others)
    return centres


# CounterSGD counting presence with estimate "count" scales by c^-0.5 <= 1, decaying with the
# steps a row was seen: its rates are higher than the SGD family's.
_RETRIEVAL_CENTRES = {
    "ml-100k": _centres(sgd=0.0464, adagrad=0.0464, adam=0.00215, rowwise_adagrad_counter=21.5,
                        counter_sgd_presence=0.215),
    "synthetic": _centres(sgd=0.215, adagrad=4.64, adam=0.00215, rowwise_adagrad_counter=21.5,
                          counter_sgd_presence=1.0)}
_TFRS_CENTRES = _centres(sgd=0.0464, adagrad=0.0464, adam=0.00464, counter_sgd=0.1, counter_sgd_presence=0.215)
GRID_CENTRES = {
    "rating": _centres(sgd=0.215, adagrad=0.215, adam=0.00464, counter_sgd_presence=1.0),
    "ctr": _centres(sgd=2.15, adagrad=0.464, adam=0.00464, counter_sgd_presence=10.0),
    "ctr_mf": _centres(sgd=21.5, adagrad=4.64, adam=0.00464, counter_sgd_presence=100.0),
    # 32 times the batch: the averaged loss's gradients are 32 times smaller per example, but the
    # MLP's dense layers take no larger SGD rates than at 256.
    "ctr_big_batch": _centres(sgd=0.464, adagrad=4.64, adam=0.0215, counter_sgd_adam=4640.0),
    "ctr_mf_big_batch": _centres(sgd=464.0, adagrad=46.4, adam=0.0215),
    "retrieval": _RETRIEVAL_CENTRES,
    "retrieval_logq": _RETRIEVAL_CENTRES,
    "retrieval_tfrs": _TFRS_CENTRES,
    "retrieval_tfrs_logq": _TFRS_CENTRES,
}
OPTIMIZER_LABELS = {"sgd": "SGD", "adagrad": "Adagrad", "adam": "Adam", "counter_sgd": "CounterSGD",
                    "counter_sgd_adam": "CounterSGD + Adam (dense)", "counter_sgd_cowclip": "CounterSGD + CowClip",
                    "counter_sgd_adam_cowclip": "CounterSGD + CowClip + Adam (dense)",
                    "counter_sgd_presence": "CounterSGD (presence, count)",
                    "frequency_sgd": "FrequencySGD", "rowwise_adagrad_counter": "RowwiseAdagradCounter"}

flags.DEFINE_list("datasets", ["ml-100k", "synthetic"], "Data sets: ml-100k (read from --data_dir) and synthetic.")
flags.DEFINE_string("data_dir", ctr_harness.ML100K_DIR, "MovieLens 100K's directory (u.data, u.item).")
flags.DEFINE_integer("synthetic_ratings", None, "Ratings of the synthetic data set (default: MovieLens 100K's "
                     "100,000).")
flags.DEFINE_list("tasks", list(GRID_CENTRES), f"Tasks, of {list(GRID_CENTRES)}.")
flags.DEFINE_list("optimizers", list(ALL_OPTIMIZERS), f"Optimizers: the examples' names and {list(VARIANTS)}.")
flags.DEFINE_integer("seeds", 3, "Seeds at the chosen learning rate (seed 0 is the grid's run).")
flags.DEFINE_integer("grid_points", GRID_POINTS, "Learning rates of each grid, nearest its centre.")
flags.DEFINE_integer("dim", 64, "Embedding width.")
flags.DEFINE_integer("ranking_epochs", 5, "Epochs of the rating and CTR models.")
flags.DEFINE_integer("ranking_batch_size", 256, "Batch size of the rating and CTR models.")
flags.DEFINE_integer("retrieval_epochs", 3, "Epochs of the retrieval model.")
flags.DEFINE_integer("retrieval_batch_size", 1024, "Batch size of the retrieval model (in-batch negatives).")
flags.DEFINE_integer("big_batch_size", 8192, "Batch size of the big-batch CTR tasks (ctr_big_batch, "
                     "ctr_mf_big_batch).")
flags.DEFINE_float("cowclip_ratio", 1e-5, "The CowClip variants' `cowclip_ratio`: 1e-5 was best of 1, 1e-3, 1e-4, "
                   "1e-5 on MovieLens 100K's CTR-MF at batch 8,192 (validation, seed 0); at ratios this small the "
                   "bound is `cowclip_min_norm` (1e-5) per occurrence.")
flags.DEFINE_integer("tfrs_dim", 32, "Embedding width of the TFRS tutorial's retrieval model.")
flags.DEFINE_integer("tfrs_epochs", 3, "Epochs of the TFRS tutorial's retrieval model.")
flags.DEFINE_integer("tfrs_batch_size", 8192, "Batch size of the TFRS tutorial's retrieval model.")
flags.DEFINE_integer("evals_per_epoch", 2, "Validation points of the learning curves per epoch.")
flags.DEFINE_integer("workers", 2, "Processes measuring the data sets side by side, each on one TensorFlow "
                     "thread (the small models' steps are mostly single-threaded); 1: all in this process.")
flags.DEFINE_integer("threads", 0, "TensorFlow's intra- and inter-op threads; 0 for its default.")
flags.DEFINE_string("output_dir", RESULTS_DIR, "Where the JSON and PNG files go.")
flags.DEFINE_bool("update", False, "Measure --tasks on --datasets only and keep every other result of the existing "
                  "quality.json in --output_dir (each task records its own seeds and sizes).")
FLAGS = flags.FLAGS

# Forwarded to each data set's worker process.
WORKER_FLAGS = ("data_dir", "synthetic_ratings", "tasks", "optimizers", "seeds", "grid_points", "dim",
                "ranking_epochs", "ranking_batch_size", "big_batch_size", "retrieval_epochs", "retrieval_batch_size",
                "cowclip_ratio", "tfrs_dim", "tfrs_epochs", "tfrs_batch_size", "evals_per_epoch")


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
    """One model and metric on one data set's split; subclasses define the model. `optimizers`:
    the only optimizers measured on it (of --optimizers), or None for all."""

    name = metric = None
    higher_is_better = True
    optimizers = None

    def __init__(self, splits, num_users, num_items):
        self.train, self.validation, self.test = splits
        self.num_users, self.num_items = num_users, num_items
        self.buckets, self.bucket_summary = frequency_buckets(self.train["item_id"], num_items)

    @property
    def epochs(self):
        return FLAGS.ranking_epochs

    @property
    def item_rows(self):
        """Rows of the item table."""
        return self.num_items

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
        optimizer = (VARIANTS[optimizer_name](learning_rate) if optimizer_name in VARIANTS
                     else make_optimizer(optimizer_name, learning_rate, frequencies=frequencies))
        self.compile(model, optimizer)
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
        model = RankingModel(self.num_users, self.num_items, task=self.ranking_task, dim=FLAGS.dim, seed=seed)
        model.build_tables()
        return model

    @property
    def label_key(self):
        return ranking_label_key(self.ranking_task)

    def training_features(self):
        return {**_features(self.train), self.label_key: self.train[self.label_key]}

    def outputs(self, model, part):
        return model(_features(part)).numpy().astype(np.float64)


class RatingTask(RankingTask):
    name, metric, higher_is_better = "rating", "rmse", False
    ranking_task = "rating"

    def per_example(self, model, part):
        return np.square(self.outputs(model, part) - part["rating"])

    def aggregate(self, part, squared_errors):
        return float(np.sqrt(np.mean(squared_errors)))


class CtrTask(RankingTask):
    name, metric = "ctr", "auc"
    ranking_task = "ctr"  # the model's task, also of the big-batch variant

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


class BigBatch:
    """A task at batch --big_batch_size with the same epochs (so 1/32 of the steps at 8,192),
    measuring `BIG_BATCH_OPTIMIZERS`; mixed in before the task it changes."""

    optimizers = BIG_BATCH_OPTIMIZERS

    @property
    def batch_size(self):
        return FLAGS.big_batch_size


class BigBatchCtrTask(BigBatch, CtrTask):
    name = "ctr_big_batch"


class BigBatchMatrixFactorizationCtrTask(BigBatch, MatrixFactorizationCtrTask):
    name = "ctr_mf_big_batch"


class RetrievalTask(Task):
    """`tf_freqsgd.models.retrieval.RetrievalModel` (d = --dim, batch --retrieval_batch_size), with
    log-Q correction from the training split's counts when `logq`."""

    name, metric = "retrieval", f"recall@{RECALL_K}"
    label_key = None
    logq = False

    @property
    def epochs(self):
        return FLAGS.retrieval_epochs

    @property
    def batch_size(self):
        return FLAGS.retrieval_batch_size

    def item_frequencies(self):
        """Appearances per training step of each item (`training.id_frequencies`), log-Q's `q`."""
        return id_frequencies(self.train["item_id"], self.num_items, self.steps_per_epoch)[0]

    def build(self, seed):
        tf.keras.utils.set_random_seed(seed)
        model = RetrievalModel(self.num_users, self.num_items, dim=FLAGS.dim, seed=seed)
        model.build_tables()
        if self.logq:
            model.sampling_probability = counts_logq(self.item_frequencies())
        return model

    def training_features(self):
        return _features(self.train)

    def item_vectors(self, model):
        return model.catalogue.catalogue_vectors()

    def user_vectors(self, model, user_ids):
        return model.user_embedding(tf.constant(user_ids, tf.int64))

    def per_example(self, model, part):
        """1 where the pair's item is among the user's `RECALL_K` best items, else 0."""
        scores = tf.matmul(self.user_vectors(model, part["user_id"]), self.item_vectors(model), transpose_b=True)
        _, top_items = tf.math.top_k(scores, k=min(RECALL_K, self.num_items))
        return (top_items.numpy() == part["item_id"][:, None]).any(axis=1).astype(np.float64)

    def aggregate(self, part, hits):
        return float(np.mean(hits))


class LogqRetrievalTask(RetrievalTask):
    name, logq = "retrieval_logq", True


class TfrsTutorialModel(tfrs.Model):
    """The TFRS basic retrieval tutorial's model: per tower `IntegerLookup` -> `Embedding(dim)`
    (Keras' default initialiser), `tfrs.tasks.Retrieval()` with its defaults (softmax
    cross-entropy summed over the batch, accidental hits kept); `sampling_probability` (item ids ->
    q) for log-Q correction."""

    def __init__(self, num_users, num_items, dim, sampling_probability=None):
        super().__init__()

        def tower(count):
            return tf.keras.Sequential([
                tf.keras.layers.IntegerLookup(vocabulary=np.arange(count, dtype=np.int64), mask_token=None),
                tf.keras.layers.Embedding(count + 1, dim)])

        self.user_model, self.item_model = tower(num_users), tower(num_items)
        self.task = tfrs.tasks.Retrieval()
        self.sampling_probability = sampling_probability

    def compute_loss(self, features, training=False):
        item_ids = features["item_id"]
        probability = self.sampling_probability(item_ids) if self.sampling_probability else None
        return self.task(self.user_model(features["user_id"]), self.item_model(item_ids),
                         candidate_sampling_probability=probability, compute_metrics=False)


class TfrsTutorialTask(RetrievalTask):
    """The TFRS tutorial's shape (`TfrsTutorialModel`): d = --tfrs_dim, batch --tfrs_batch_size,
    --tfrs_epochs epochs."""

    name = "retrieval_tfrs"
    optimizers = TFRS_OPTIMIZERS

    @property
    def item_rows(self):
        return self.num_items + 1  # IntegerLookup's out-of-vocabulary row

    @property
    def epochs(self):
        return FLAGS.tfrs_epochs

    @property
    def batch_size(self):
        return FLAGS.tfrs_batch_size

    def build(self, seed):
        tf.keras.utils.set_random_seed(seed)
        probability = counts_logq(self.item_frequencies()) if self.logq else None
        model = TfrsTutorialModel(self.num_users, self.num_items, FLAGS.tfrs_dim, probability)
        model.user_model(tf.zeros([1], tf.int64))
        model.item_model(tf.zeros([1], tf.int64))
        return model

    def id_tables(self, model):
        return [(model.user_model.layers[-1], self.train["user_id"] + 1, self.num_users + 1),
                (model.item_model.layers[-1], self.train["item_id"] + 1, self.num_items + 1)]

    def item_vectors(self, model):
        return model.item_model(tf.range(self.num_items, dtype=tf.int64))

    def user_vectors(self, model, user_ids):
        return model.user_model(tf.constant(user_ids, tf.int64))


class LogqTfrsTutorialTask(TfrsTutorialTask):
    name, logq = "retrieval_tfrs_logq", True


TASKS = {task.name: task for task in (RatingTask, CtrTask, MatrixFactorizationCtrTask, BigBatchCtrTask,
                                      BigBatchMatrixFactorizationCtrTask, RetrievalTask, LogqRetrievalTask,
                                      TfrsTutorialTask, LogqTfrsTutorialTask)}


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
    """The `--grid_points` rates of the ladder `10^(n/3)` nearest the centre, ascending."""
    centres = GRID_CENTRES[task_name]
    if "ml-100k" in centres:  # per data set
        centres = centres.get(dataset_name, centres["ml-100k"])
    offsets = sorted(range(-GRID_POINTS, GRID_POINTS + 1), key=lambda k: (abs(k), k))[:FLAGS.grid_points]
    centre = round(3 * math.log10(centres[optimizer_name]))  # the ladder 10^(n/3): 0.1, 0.215, 0.464, 1, ...
    return [float(f"{10.0 ** ((centre + k) / 3):.3g}") for k in sorted(offsets)]


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
            "state_bytes_item_rows": tf_freqsgd.optimizer_state_bytes(model.optimizer, rows=task.item_rows)}


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
    result.update(rate_robustness(task, grid, result["validation_by_learning_rate"], optimizer_name))
    if finished:
        result["state_bytes"] = finished[0]["state_bytes"]
        result["state_bytes_per_item_row"] = finished[0]["state_bytes_item_rows"] / task.item_rows
    return result


def default_learning_rate(optimizer_name):
    """The learning rate the optimizer's class gets when none is given."""
    legacy = tf.keras.optimizers.legacy
    classes = {"sgd": legacy.SGD, "adagrad": legacy.Adagrad, "adam": legacy.Adam,
               "frequency_sgd": tf_freqsgd.FrequencySGD, "rowwise_adagrad_counter": tf_freqsgd.RowwiseAdagradCounter}
    counter_sgd = optimizer_name.startswith("counter_sgd")  # CounterSGD with other arguments than the rate
    return inspect.signature(tf_freqsgd.CounterSGD if counter_sgd else classes[optimizer_name]).parameters[
        "learning_rate"].default


def rate_robustness(task, grid, validation, optimizer_name):
    """The widest run of consecutive grid rates whose seed-0 validation metric is within
    `ROBUST_SHARE` of the best (RMSE at most 5% above it, AUC and recall at least 95% of it), its
    span (highest / lowest rate), and whether the optimizer's default rate lies in it."""
    values = np.array([np.nan if v is None else v for v in validation], np.float64)
    default = default_learning_rate(optimizer_name)
    if not np.isfinite(values).any():
        return {"robust_rates": None, "robust_span": None, "default_learning_rate": default, "default_in_range": False}
    best = np.nanmax(values) if task.higher_is_better else np.nanmin(values)
    with np.errstate(invalid="ignore"):
        good = values >= (1 - ROBUST_SHARE) * best if task.higher_is_better else values <= (1 + ROBUST_SHARE) * best
    runs, start = [], None
    for index, ok in enumerate(list(good) + [False]):
        if ok and start is None:
            start = index
        elif not ok and start is not None:
            runs.append((start, index - 1))
            start = None
    low, high = max(runs, key=lambda run: (grid[run[1]] / grid[run[0]], -run[0]))
    return {"robust_rates": [grid[low], grid[high]], "robust_span": grid[high] / grid[low],
            "default_learning_rate": default, "default_in_range": grid[low] <= default <= grid[high]}


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


def plot_rates(dataset, tasks, path):
    """Seed 0's validation metric against the learning rate, per task and optimizer; the shaded
    band is within 5% of each task's best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.8 * rows), squeeze=False)
    for axis in axes.flat[len(tasks):]:
        axis.set_visible(False)
    for axis, (task_name, task) in zip(axes.flat, tasks.items()):
        values = []
        for optimizer_name, result in task["optimizers"].items():
            validation = [np.nan if v is None else v for v in result["validation_by_learning_rate"]]
            values += [v for v in validation if np.isfinite(v)]
            axis.plot(result["grid"], validation, marker=".", label=OPTIMIZER_LABELS[optimizer_name])
        if values:
            best = max(values) if task["higher_is_better"] else min(values)
            band = sorted([best, best * (1 - ROBUST_SHARE if task["higher_is_better"] else 1 + ROBUST_SHARE)])
            axis.axhspan(*band, color="grey", alpha=0.15)
            low = np.percentile(values, 25) if task["higher_is_better"] else min(values)
            high = max(values) if task["higher_is_better"] else np.percentile(values, 75)
            axis.set_ylim(low - 0.1 * (high - low) - 1e-4, high + 0.1 * (high - low) + 1e-4)
        axis.set_xscale("log")
        axis.set_xlabel("learning rate")
        axis.set_ylabel(f"validation {task['metric']} (seed 0)")
        axis.set_title(f"{dataset}: {task_name}", fontsize=10)
        axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
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
                result = task["optimizers"].get(optimizer_name)
                if result is None:  # not measured on this task
                    cells.append("–")
                    continue
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


def write(results, kept=None):
    """quality.json in --output_dir: `results`, with `kept`'s other results (`with_kept`)."""
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    with open(os.path.join(FLAGS.output_dir, "quality.json"), "w") as f:
        json.dump(finite_or_none(with_kept(results, kept)), f, indent=1)


def measure_dataset(dataset_name, results, started, kept=None):
    """Measures every task on one data set into `results` (written after each task, with `kept`)."""
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
            "batch_size": task.batch_size, "steps_per_epoch": task.steps_per_epoch, "seeds": FLAGS.seeds,
            "logq": task.name.endswith("_logq"), "buckets": task.bucket_summary,
            "test_examples_per_bucket": np.bincount(task.buckets[task.test["item_id"]], minlength=3).tolist(),
            "optimizers": {}}
        for optimizer_name in FLAGS.optimizers:
            if (task.optimizers is not None and optimizer_name not in task.optimizers
                    or task.name not in VARIANT_TASKS.get(optimizer_name, (task.name,))):
                continue
            result = measure_optimizer(task, optimizer_name, dataset_name)
            entry["tasks"][task_name]["optimizers"][optimizer_name] = result
            test = result["test"]
            shown = f"{test['mean']:.4f} ± {test['std']:.4f}" if test else "diverged"
            print(f"  {OPTIMIZER_LABELS[optimizer_name]}: lr {result['learning_rate']:g} of {result['grid']}, "
                  f"test {task.metric} {shown} ({time.time() - started:.0f} s so far)", flush=True)
        write(results, kept)


def existing_results():
    """The quality.json of --output_dir, or None."""
    path = os.path.join(FLAGS.output_dir, "quality.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def with_kept(measured, kept):
    """`measured` with every data set, task and optimizer result of `kept` that it did not measure
    (each data set's tasks in `TASKS`' order); `measured`'s settings, since the tasks record their
    own sizes."""
    if not kept:
        return measured
    merged = dict(measured, datasets=dict(measured["datasets"]),
                  skipped={**kept.get("skipped", {}), **measured["skipped"]})
    for dataset_name, entry in kept["datasets"].items():
        if dataset_name not in merged["datasets"]:
            merged["datasets"][dataset_name] = entry
            continue
        tasks = dict(entry["tasks"])
        for name, task in merged["datasets"][dataset_name]["tasks"].items():
            optimizers = {**tasks[name]["optimizers"], **task["optimizers"]} if name in tasks else task["optimizers"]
            tasks[name] = dict(task, optimizers=optimizers)
        merged["datasets"][dataset_name] = dict(merged["datasets"][dataset_name],
                                                tasks={name: tasks[name] for name in TASKS if name in tasks})
    return merged


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
                             "ranking_epochs": 1, "retrieval_epochs": 1, "tfrs_epochs": 1})
    for name in FLAGS.tasks:
        if name not in TASKS:
            raise ValueError(f"--tasks: unknown task {name!r}; expected some of {list(TASKS)}.")
    for name in FLAGS.optimizers:
        if name not in ALL_OPTIMIZERS:
            raise ValueError(f"--optimizers: unknown optimizer {name!r}; expected some of {list(ALL_OPTIMIZERS)}.")
    for name in ("seeds", "dim", "ranking_epochs", "big_batch_size", "retrieval_epochs", "tfrs_dim", "tfrs_epochs",
                 "tfrs_batch_size", "grid_points", "evals_per_epoch", "workers"):
        if FLAGS[name].value < 1:
            raise ValueError(f"--{name} must be at least 1; got {FLAGS[name].value}.")
    if FLAGS.threads:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    settings = {key: FLAGS[key].value for key in ("datasets", *WORKER_FLAGS[1:], "workers", "threads")}
    settings.update({"split_seed": SPLIT_SEED, "bucket_shares": BUCKET_SHARES, "recall_k": RECALL_K,
                     "recommended": RECOMMENDED, "quick": FLAGS.quick})
    results = {"settings": settings, "datasets": {}, "skipped": {}}
    kept = existing_results() if FLAGS.update else None
    started = time.time()
    if FLAGS.workers > 1 and len(FLAGS.datasets) > 1:
        measure_in_workers(results)
    else:
        for dataset_name in FLAGS.datasets:
            measure_dataset(dataset_name, results, started, kept)
    results["seconds"] = time.time() - started
    results = with_kept(results, kept)
    for dataset_name, entry in results["datasets"].items():
        plot_curves(entry["name"], entry["tasks"], os.path.join(FLAGS.output_dir, f"quality_curves_{dataset_name}.png"))
        plot_buckets(entry["name"], entry["tasks"],
                     os.path.join(FLAGS.output_dir, f"quality_buckets_{dataset_name}.png"))
        plot_rates(entry["name"], entry["tasks"], os.path.join(FLAGS.output_dir, f"quality_rates_{dataset_name}.png"))
    write(results)
    print_tables(results)


if __name__ == "__main__":
    app.run(main)
