r"""Ranking: a user embedding and an item embedding scored by a small MLP (TFRS's ranking model).

.. math::

    y(u, i) = \mathrm{MLP}([e_u; e_i]), \qquad \mathrm{MLP}: 2d \to 256 \to 64 \to 1 \ (\text{ReLU})

Tasks (``RANKING_TASKS``):

* ``"rating"``: ``y`` predicts the rating; loss: mean squared error over the batch. Evaluation:
  RMSE, and the AUC of ``y`` as a click score on the CTR view of the same ratings (rating 3
  dropped, positive above 3), since a good rating model also orders likes before dislikes.
* ``"ctr"``: ``y`` is the logit of "liked" (rating > 3) on the CTR view; loss: mean sigmoid
  cross-entropy. Evaluation: AUC and log-loss. Exact metrics, from ``tf_freqsgd.evaluation``.

``export_ranking`` writes a SavedModel of stock TensorFlow ops whose ``serving_default`` maps
``user_id`` and ``movie_id`` (int64 ``[batch]``, the data set's raw ids, as retrieval serves) to
``score`` (float32 ``[batch]``), ``unknown_user`` and ``unknown_movie`` (bool ``[batch]``); the
raw-id-to-row mappings are in the graph. A known pair's ``score`` is the Keras model's: the
predicted rating, or the click probability ``sigmoid(y)``. A pair whose user or movie is unknown
(an id the data set does not have, or, with a TFRA table, one it holds no trained row for) gets
the ``default_score`` given at export (the training split's mean rating, or its share of likes).
"""

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tf_freqsgd.choices import RANKING_TASKS
from tf_freqsgd.data import ctr_view
from tf_freqsgd.evaluation import auc, log_loss
from tf_freqsgd.export import export_for_serving
from tf_freqsgd.layers import FallbackForUnknown
from tf_freqsgd.models.embeddings import make_embedding, per_row, raw_id_index, seed_rows

HIDDEN_UNITS = (256, 64)


def mlp_head(dim, hidden_units=HIDDEN_UNITS, seed=0):
    """``[e_u, e_i] -> MLP([e_u; e_i])``, a functional model of two ``[batch, dim]`` inputs."""
    user = tf.keras.Input(shape=(dim,), name="user_vector")
    item = tf.keras.Input(shape=(dim,), name="item_vector")
    hidden = tf.keras.layers.Concatenate()([user, item])
    for index, units in enumerate(hidden_units):
        initializer = tf.keras.initializers.GlorotUniform(seed=seed + index)
        hidden = tf.keras.layers.Dense(units, activation="relu", kernel_initializer=initializer)(hidden)
    output = tf.keras.layers.Dense(1, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed + 99))(hidden)
    return tf.keras.Model([user, item], tf.keras.layers.Reshape(())(output), name="head")


class RankingModel(tfrs.Model):
    """``y(u, i)`` of the module docstring. Inputs: dicts of int64 ``user_id`` and ``item_id``
    (``[batch]``); training data: ``(features, label)`` pairs (the rating, or 0/1)."""

    def __init__(self, num_users, num_items, *, task="rating", embedding="table", dim=32, seed=0,
                 **embedding_options):
        super().__init__()
        if task not in RANKING_TASKS:
            raise ValueError(f"Unknown ranking task {task!r}; expected one of {RANKING_TASKS}.")
        self.ranking_task = task
        self.num_users, self.num_items = num_users, num_items
        self.user_embedding = make_embedding(embedding, num_users, dim, name="user_embedding", seed=seed,
                                             **embedding_options)
        self.item_embedding = make_embedding(embedding, num_items, dim, name="item_embedding", seed=seed + 1,
                                             **embedding_options)
        self.head = mlp_head(dim, seed=seed + 2)
        self.epoch_loss = tf.keras.metrics.Mean(name="loss")
        # Summed here, divided by the global batch in compute_loss: Keras refuses a mean under a
        # tf.distribute strategy, whose replicas' gradients are summed.
        summed = tf.keras.losses.Reduction.SUM
        if task == "rating":
            loss = tf.keras.losses.MeanSquaredError(reduction=summed)
            metric = tf.keras.metrics.RootMeanSquaredError(name="rmse")
        else:
            loss = tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=summed)
            metric = tf.keras.metrics.AUC(from_logits=True, name="auc")
        self.task = tfrs.tasks.Ranking(loss=loss, metrics=[metric])

    def build_tables(self):
        """Creates every variable (call once before compiling), and gives every catalogue item a
        row in a TFRA table (``embeddings.seed_rows``), as a fixed table has."""
        self(_placeholder_batch())
        seed_rows(self.item_embedding, np.arange(self.num_items))

    def call(self, features):
        return self.head([self.user_embedding(features["user_id"]), self.item_embedding(features["item_id"])])

    def compute_loss(self, inputs, training=False):
        features, labels = inputs
        # [batch, 1]: a Keras loss averages over the last axis first.
        summed = self.task(labels=labels[:, None], predictions=self(features)[:, None])
        examples = tf.cast(tf.shape(labels)[0], summed.dtype)
        self.epoch_loss.update_state(summed / examples)
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        return summed / (examples * replicas)

    def train_step(self, inputs):
        return self._epoch_logs(super().train_step(inputs))

    def test_step(self, inputs):
        return self._epoch_logs(super().test_step(inputs))

    def _epoch_logs(self, logs):
        # TFRS reports the last batch's loss, and regularization and total losses that repeat it
        # here; the epoch's mean loss is shown instead.
        logs = {name: value for name, value in logs.items() if name not in ("regularization_loss", "total_loss")}
        return {**logs, "loss": self.epoch_loss.result()}


def _placeholder_batch():
    return {"user_id": tf.zeros([1], tf.int64), "item_id": tf.zeros([1], tf.int64)}


def training_view(ratings, task):
    """The ratings a ``task`` trains and evaluates on: all of them, or the CTR view."""
    return ctr_view(ratings) if task == "ctr" else ratings


def label_key(task):
    return "label" if task == "ctr" else "rating"


def evaluate_ranking(model, ratings, batch_size=8192):
    """Exact metrics of ``model`` on a ratings dict (all ratings; the task picks its view):
    ``{"rmse", "auc"}`` for ``"rating"``, ``{"auc", "log_loss"}`` for ``"ctr"``."""
    def predict(part):
        features = {key: part[key] for key in ("user_id", "item_id")}
        return model.predict(features, batch_size=batch_size, verbose=0)

    clicks = ctr_view(ratings)
    if model.ranking_task == "ctr":
        logits = predict(clicks)
        return {"auc": auc(clicks["label"], logits), "log_loss": log_loss(clicks["label"], logits)}
    predicted = predict(ratings)
    rmse = float(np.sqrt(np.mean((predicted - ratings["rating"]) ** 2)))
    return {"rmse": rmse, "auc": auc(clicks["label"], predict(clicks))}


def export_ranking(model, export_dir, movie_ids, *, user_ids, default_score):
    """Writes the scorer of the module docstring to ``export_dir`` (replaced).

    Args:
      model: a trained `RankingModel`.
      export_dir: the SavedModel's directory.
      movie_ids: the raw id of each item (``MovieLens.items["movie_id"]``), ``[num_items]``, distinct.
      user_ids: the raw id of each user (``MovieLens.users["user_id"]``), ``[num_users]``, distinct.
      default_score: the finite ``score`` of pairs with an unknown user or movie, on the task's
        scale: the training split's mean rating (``"rating"``), its share of likes (``"ctr"``).

    Returns the Keras model saved.
    """
    movie_ids = per_row("movie_ids", movie_ids, model.num_items, "item")
    user_ids = per_row("user_ids", user_ids, model.num_users, "user")
    if not np.isfinite(default_score):
        raise ValueError(f"default_score must be finite; got {default_score}.")
    user_id = tf.keras.Input(shape=(), dtype=tf.int64, name="user_id")
    movie_id = tf.keras.Input(shape=(), dtype=tf.int64, name="movie_id")
    user_index, unknown_user = raw_id_index(model.user_embedding, user_ids, name="user_index")(user_id)
    item_index, unknown_movie = raw_id_index(model.item_embedding, movie_ids, name="movie_index")(movie_id)
    output = model.head([model.user_embedding(user_index), model.item_embedding(item_index)])
    activation = "sigmoid" if model.ranking_task == "ctr" else "linear"
    score = FallbackForUnknown(np.float32(default_score), name="score")(
        [tf.keras.layers.Activation(activation)(output), unknown_user, unknown_movie])
    outputs = [score, tf.keras.layers.Identity(name="unknown_user")(unknown_user),
               tf.keras.layers.Identity(name="unknown_movie")(unknown_movie)]
    return export_for_serving(tf.keras.Model([user_id, movie_id], outputs), export_dir, overwrite=True)
