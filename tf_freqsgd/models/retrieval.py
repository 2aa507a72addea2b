r"""TFRS two-tower retrieval with in-batch negatives and optional log-Q correction.

A user tower and an item tower (one embedding each, ``tf_freqsgd.models.embeddings``) map ids to
vectors ``u`` and ``v``. For a batch of ``B`` (user, item) pairs the loss is TFRS's ``Retrieval``
task: softmax cross-entropy of each user against its own item, the other items of the batch
being the negatives, summed over the batch:

.. math::

    L = -\sum_i \log \frac{\exp(s_{ii})}{\sum_j \exp(s_{ij})}, \qquad
    s_{ij} = \langle u_i, v_j\rangle - \log q_j \quad (\text{log-Q correction})

Other occurrences of user ``i``'s positive item in the batch are removed from its negatives
(TFRS's ``remove_accidental_hits``). In-batch negatives are items sampled by popularity: an item
of frequency ``q_j`` is pushed down about ``q_j`` times as often as under uniform sampling.
Subtracting ``log q_j`` (Yi et al., "Sampling-bias-corrected neural modeling for large corpus item
recommendations", RecSys 2019) corrects that. ``q_j`` only needs to be right up to a common
factor (it cancels in the softmax), so appearances per step serve as well as per batch slot:

* ``logq="counter"``: ``q_j = c_j / N_t``, the frequency estimate of the counter the optimizer
  (``CounterSGD``, ``RowwiseAdagradCounter``) keeps for the item's row, at the current step
  (``tf_freqsgd.models.row_state.batch_frequency``): free, online, and it follows drift.
* ``logq="counts"``: ``q_j = count_j / steps_per_epoch`` from the training split, for any optimizer.

Evaluation ranks the whole catalogue for each held-out (user, item) pair. During training,
``model.evaluate`` reports ``recall@k``, TFRS's ``FactorizedTopK`` top-k categorical accuracy: the
share of pairs whose item is among the user's ``k`` highest-scoring items (items the user rated in
training included, as in TFRS' tutorial). ``ranked_items`` gives each user's top items, leaving
out given (user, item) pairs where asked (those of the training split, say), for
``tf_freqsgd.evaluation.top_k_metrics`` (recall@k, NDCG@k, MRR).

``export_retrieval`` writes a SavedModel of stock TensorFlow ops whose ``serving_default`` maps
``user_id`` (int64 ``[batch]``, the data set's raw user id, ``MovieLens.users["user_id"]``) to
``movie_ids`` (int64 ``[batch, k]``, raw movie ids, best first), ``scores`` (float32
``[batch, k]``) and ``cold_start`` (bool ``[batch]``); the raw-id-to-row mapping is in the graph.

* A known user (``cold_start`` False) gets the brute-force top-k over the catalogue's embeddings;
  ``scores`` are the dot products ``<u, v>``, exactly the Keras model's (``recommend``).
* A cold-start user (``cold_start`` True): an id the data set does not have, or, with a TFRA user
  table, a user it holds no trained row for (their lookup has no vector of their own). They all
  get the ``k`` most-trained items, most first: by the optimizer's counters (CounterSGD,
  RowwiseAdagradCounter: ``c_k`` decayed to the export's step) or by given per-item counts (the
  training split's, for optimizers without counters); ``scores`` are those counts (float32, not
  dot products), ties broken by item order.

``assets.extra/movies.tsv`` beside it lists the titles.
"""

import csv
import os

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tf_freqsgd.export import export_for_serving
from tf_freqsgd.layers import FallbackForUnknown
from tf_freqsgd.models.embeddings import make_embedding, per_row, raw_id_index, seed_rows
from tf_freqsgd.models.row_state import batch_frequency, counter_values, has_counters

MOVIES_FILE = "movies.tsv"
RECALL_KS = (10, 50, 100)


class CatalogueTopK(tfrs.layers.factorized_top_k.TopK):
    """Exact top-k over every item of the catalogue, embedded by the item tower at each call, so
    evaluation always sees the current weights (no index to rebuild after training)."""

    def __init__(self, item_embedding, num_items, k=max(RECALL_KS), **kwargs):
        super().__init__(k=k, **kwargs)
        self.item_embedding = item_embedding
        self.num_items = num_items

    def catalogue_vectors(self):
        return self.item_embedding(tf.range(self.num_items, dtype=tf.int64))

    def call(self, queries, k=None):
        k = min(k or self._k, self.num_items)
        scores, item_ids = tf.math.top_k(self._compute_score(queries, self.catalogue_vectors()), k=k)
        return scores, tf.cast(item_ids, tf.int64)

    def index(self, candidates, identifiers=None):
        raise NotImplementedError("CatalogueTopK scores the item tower's current catalogue; it keeps no index.")

    def is_exact(self):
        return True


class RetrievalModel(tfrs.Model):
    """Two towers of one embedding each over ``num_users`` users and ``num_items`` items.

    Inputs: dicts of int64 ``user_id`` and ``item_id`` (``[batch]``). Training reports the mean
    batch loss; evaluation also ``recall@<k>`` (TFRS' top-k categorical accuracy) for each ``k``
    of ``ks``. Set ``sampling_probability`` (a function of the batch's item ids, see
    ``counter_logq`` and ``counts_logq``) for log-Q correction.
    """

    def __init__(self, num_users, num_items, *, embedding="table", dim=32, ks=RECALL_KS, seed=0,
                 **embedding_options):
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.user_embedding = make_embedding(embedding, num_users, dim, name="user_embedding", seed=seed,
                                             **embedding_options)
        self.item_embedding = make_embedding(embedding, num_items, dim, name="item_embedding", seed=seed + 1,
                                             **embedding_options)
        self.catalogue = CatalogueTopK(self.item_embedding, num_items, k=max(ks))
        self.epoch_loss = tf.keras.metrics.Mean(name="loss")
        self.task = tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(self.catalogue, ks=ks, name="recall"),
            loss_metrics=[self.epoch_loss], remove_accidental_hits=True)
        self.sampling_probability = None

    def build_tables(self):
        """Creates the towers' variables, and gives every catalogue item a row in a TFRA table
        (see ``embeddings.seed_rows``): a candidate's vector is then fixed, as in a fixed table."""
        self.user_embedding(tf.zeros([1], tf.int64))
        self.item_embedding(tf.zeros([1], tf.int64))
        seed_rows(self.item_embedding, np.arange(self.num_items))

    def compute_loss(self, features, training=False):
        item_ids = features["item_id"]
        probability = self.sampling_probability(item_ids) if self.sampling_probability else None
        return self.task(self.user_embedding(features["user_id"]), self.item_embedding(item_ids),
                         candidate_sampling_probability=probability, candidate_ids=item_ids,
                         compute_metrics=not training, compute_batch_metrics=False)

    def train_step(self, inputs):
        # Recall is measured in evaluation only (compute_metrics=not training): its training
        # means stay at zero. TFRS reports the last batch's loss; the epoch's mean is shown.
        super().train_step(inputs)
        return {"loss": self.epoch_loss.result()}

    def test_step(self, inputs):
        # Shown as val_recall@10... during fit: TFRS names them recall/top_10_categorical_accuracy.
        logs = super().test_step(inputs)
        prefix, suffix = "recall/top_", "_categorical_accuracy"
        return {"loss": self.epoch_loss.result(), **{f"recall@{name[len(prefix):-len(suffix)]}": value
                                                      for name, value in logs.items() if name.startswith(prefix)}}

    def recommend(self, user_ids, k):
        """``(scores, item ids)`` of the ``k`` best items of each user, best first."""
        return self.catalogue(self.user_embedding(tf.constant(user_ids, tf.int64)), k=k)


def counter_logq(model):
    """Log-Q probabilities from the counters of ``model.optimizer`` (built) for the item table."""
    if not has_counters(model.optimizer):
        raise ValueError(f"logq='counter' needs an optimizer that keeps counters (CounterSGD, "
                         f"RowwiseAdagradCounter); got {type(model.optimizer).__name__}. Use logq='counts'.")
    return lambda item_ids: batch_frequency(model.optimizer, model.item_embedding, item_ids)


def counts_logq(item_frequencies):
    """Log-Q probabilities read from fixed per-item frequencies (``training.id_frequencies``)."""
    table = tf.constant(np.asarray(item_frequencies, np.float32))
    return lambda item_ids: tf.gather(table, item_ids)


def ranked_items(model, user_ids, k, *, exclude=None, keep=None, batch_size=4096):
    """The ``k`` best items of each of ``user_ids`` as ``model.recommend`` ranks them: ``[n, k]``
    int64 item ids, best first.

    ``exclude``: ``(user ids, item ids)`` of pairs never ranked ahead of another item (those of the
    training split, say: a movie the user rated is not recommended again); ``keep``: ``[n]``, an
    item per query that stays ranked even so (the held-out item of each evaluated pair, which a
    data set that repeats pairs may also hold in training). Users are scored ``batch_size`` at a
    time against the whole catalogue.
    """
    user_ids = np.asarray(user_ids, np.int64)
    excluded = None
    keep = None if keep is None else np.asarray(keep, np.int64)
    if exclude is not None:
        users, items = (np.asarray(ids, np.int64) for ids in exclude)
        order = np.argsort(users, kind="stable")
        excluded = tf.RaggedTensor.from_row_lengths(items[order], np.bincount(users, minlength=model.num_users))
    catalogue = model.catalogue.catalogue_vectors()
    ranked = []
    for start in range(0, len(user_ids), batch_size):
        users = tf.constant(user_ids[start:start + batch_size])
        scores = tf.matmul(model.user_embedding(users), catalogue, transpose_b=True)  # as CatalogueTopK scores
        if excluded is not None:
            kept = None if keep is None else keep[start:start + batch_size]
            scores = _excluded(scores, tf.gather(excluded, users), kept)
        ranked.append(tf.math.top_k(scores, k=min(k, model.num_items)).indices.numpy().astype(np.int64))
    return np.concatenate(ranked)


def _excluded(scores, items, keep):
    """``scores`` (``[users, items]``) with each row's ``items`` (ragged) at -inf, but its ``keep``
    item (None: none) at its score."""
    positions = tf.stack([items.value_rowids(), items.flat_values], axis=1)
    masked = tf.tensor_scatter_nd_update(scores, positions, tf.fill(tf.shape(positions)[:1], -np.inf))
    if keep is None:
        return masked
    kept = tf.stack([tf.range(tf.shape(scores, out_type=tf.int64)[0]), keep], axis=1)
    return tf.tensor_scatter_nd_update(masked, kept, tf.gather_nd(scores, kept))


def export_retrieval(model, export_dir, movie_ids, *, user_ids, k=10, titles=None, item_counts=None):
    """Writes the SavedModel described in the module docstring to ``export_dir`` (replaced).

    The catalogue's vectors are computed now and stored; the user tower is the trained one, which
    ``export_for_serving`` turns into stock ops (a TFRA table frozen, MLET collapsed, PEP pruned).

    Args:
      model: a trained `RetrievalModel`.
      export_dir: the SavedModel's directory.
      movie_ids: the raw id served for each item (``MovieLens.items["movie_id"]``), ``[num_items]``.
      user_ids: the raw id clients send for each user (``MovieLens.users["user_id"]``),
        ``[num_users]``, distinct.
      k: movies per user, in ``[1, num_items]``.
      titles: optional, one per item: ``assets.extra/movies.tsv`` then lists ``movie_id``,
        ``title`` for clients (TF Serving ignores ``assets.extra``).
      item_counts: how much each item was trained, ``[num_items]`` (the training split's ratings
        per item, say), ranking the cold-start items. None: the counters of ``model.optimizer``,
        which must keep them (CounterSGD, RowwiseAdagradCounter); SGD, Adagrad, Adam need it.

    Returns the Keras model saved.

    Raises:
      ValueError: an argument's shape, ``k``, repeated ``user_ids``, or no ``item_counts`` for an
        optimizer without counters.
    """
    movie_ids = per_row("movie_ids", movie_ids, model.num_items, "item")
    user_ids = per_row("user_ids", user_ids, model.num_users, "user")
    if titles is not None and len(titles) != model.num_items:
        raise ValueError(f"titles has {len(titles)} entries; expected {model.num_items}, one per item.")
    if not 1 <= k <= model.num_items:
        raise ValueError(f"k must be in [1, {model.num_items}] (the catalogue size); got {k}.")
    counts = _training_counts(model, item_counts)
    most_trained = np.argsort(-counts, kind="stable")[:k]
    top_k = tfrs.layers.factorized_top_k.BruteForce(k=k, name="top_k")
    top_k.index(model.catalogue.catalogue_vectors(), identifiers=tf.constant(movie_ids))
    user_id = tf.keras.Input(shape=(), dtype=tf.int64, name="user_id")
    user_index, cold_start = raw_id_index(model.user_embedding, user_ids, name="user_index")(user_id)
    scores, ids = top_k(model.user_embedding(user_index))
    outputs = [FallbackForUnknown(movie_ids[most_trained], name="movie_ids")([ids, cold_start]),
               FallbackForUnknown(counts[most_trained], name="scores")([scores, cold_start]),
               tf.keras.layers.Identity(name="cold_start")(cold_start)]
    saved = export_for_serving(tf.keras.Model(user_id, outputs), export_dir, overwrite=True)
    if titles is not None:
        os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
        with open(os.path.join(export_dir, "assets.extra", MOVIES_FILE), "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, delimiter="\t")
            writer.writerow(["movie_id", "title"])
            writer.writerows(zip(movie_ids.tolist(), titles))
    return saved


def _training_counts(model, item_counts):
    """Per-item float32 counts: ``item_counts``, else the optimizer's counters (0 for rows never counted)."""
    if item_counts is not None:
        return per_row("item_counts", item_counts, model.num_items, "item", np.float32)
    if not has_counters(model.optimizer):
        raise ValueError(f"export_retrieval ranks cold-start items by the optimizer's counters, and "
                         f"{type(model.optimizer).__name__} keeps none: pass item_counts (the training split's "
                         "ratings per item, say).")
    ids, values = counter_values(model.optimizer, model.item_embedding)
    counts = np.zeros(model.num_items, np.float32)
    counts[ids] = values
    return counts
