r"""PEP: embeddings pruned by learnable thresholds (arXiv 2101.07577), and the retrain phase.

Plug-in Embedding Pruning trains a table ``V`` (``n × d``) together with thresholds ``s`` and
looks rows up through a soft threshold:

.. math::  \hat V = \operatorname{sign}(V) \odot \operatorname{ReLU}\big(|V| - \sigma(s)\big)

Entries with ``|V| <= σ(s)`` are exactly zero. ``s`` has one of these granularities (its shape):

* ``"global"`` — one scalar; ``"dimension"`` — one per column (``d``);
* ``"feature"`` — one per row (``n × 1``); ``"feature_dim"`` — one per entry (``n × d``, default);
* ``"field"`` — one per field (``F × 1``); ``"field_dim"`` — one per field and column (``F × d``),
  for a table whose rows are laid out field by field (``field_sizes``, as PEP's ``field_dims``).

A lookup gathers the batch's rows of ``V`` (and of per-row ``s``) before thresholding, so the
optimizers receive ``IndexedSlices`` gradients over the batch's rows: the frequency-aware
optimizers count rows, and a step stays O(batch). ``"global"`` and ``"dimension"`` thresholds
are small dense variables. ``∂V̂/∂s = -sign(V)·σ'(s)`` on the entries still alive, so the
thresholds learn from the loss; ``σ'(s)`` is tiny at a very negative ``s``, so ``threshold_init``
sets how fast pruning can start.

The paper trains ``s`` with Adam, whose normalised step moves ``s`` however small its gradient.
Under SGD-type rules (CounterSGD, Adagrad while the gradient is small against its initial
accumulator) ``s`` barely moves. Two remedies: give ``s`` to Adam (``CounterSGD(...,
dense_optimizer="adam")`` trains every variable but the ``embeddings`` tables with it), or
``threshold_scale = c``: the variable holds ``θ = s / c``, so its gradient is ``c · ∂L/∂s`` and a
step that is linear in the gradient moves ``s`` ``c²`` times as far.

``PEPSparsityCallback`` records the number of non-zero entries of ``V̂`` and saves each layer's
mask ``V̂ != 0`` when a target sparsity is first reached, with the layer's values at the rewind
point: the start of training (the lottery ticket's original initial values) or, with
``rewind_epochs=k``, the end of epoch ``k`` (late rewinding, Frankle et al., arXiv 1912.05671).
The retrain phase is a ``MaskedEmbedding`` built from that mask and those values: no threshold,
and only the unmasked entries train.
"""

import math
import numbers
import os

import numpy as np
import tensorflow as tf

from tf_freqsgd.layers import common

GRANULARITIES = ("global", "dimension", "feature", "feature_dim", "field", "field_dim")
_FIELD_GRANULARITIES = ("field", "field_dim")
# sigmoid(-15) = 3e-7: no entry starts pruned, and sigma'(s) still lets the thresholds move.
DEFAULT_THRESHOLD_INIT = -15.0


def soft_threshold(values, threshold):
    """``sign(values) · ReLU(|values| − threshold)`` (broadcasting)."""
    return tf.sign(values) * tf.nn.relu(tf.abs(values) - threshold)


def _lookup(table, ids):
    if ids.dtype not in (tf.int32, tf.int64):
        ids = tf.cast(ids, tf.int32)
    return tf.nn.embedding_lookup(table, ids)


@tf.keras.utils.register_keras_serializable(package="tf_freqsgd")
class PEPEmbedding(tf.keras.layers.Layer):
    r"""Embedding ``V̂ = sign(V) · ReLU(|V| − σ(s))`` with learnable thresholds ``s``.

    Args:
      input_dim: number of ids ``n``.
      output_dim: width ``d``.
      granularity: shape of ``s``: ``"global"``, ``"dimension"``, ``"feature"``,
        ``"feature_dim"`` (default), ``"field"`` or ``"field_dim"``.
      threshold_init: initial value of every ``s``.
      threshold_scale: ``c > 0``; ``s = c · θ`` with ``θ`` the trained variable ``threshold``
        (default 1: ``θ = s``). Linear steps on ``θ`` move ``s`` ``c²`` times as far.
      field_sizes: for ``"field"`` / ``"field_dim"``: the number of rows of each field, in
        table order; they sum to ``input_dim``.
      embeddings_initializer: initializer of ``V`` (Keras' ``Embedding`` default, ``"uniform"``).
      **kwargs: ``tf.keras.layers.Layer`` arguments.

    Input: integer ids in ``[0, input_dim)``, any shape. Output: ``ids.shape + [output_dim]``.
    """

    def __init__(self, input_dim, output_dim, granularity="feature_dim", threshold_init=DEFAULT_THRESHOLD_INIT,
                 field_sizes=None, embeddings_initializer="uniform", threshold_scale=1.0, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.input_dim = common.positive_int("PEPEmbedding", "input_dim", input_dim)
        self.output_dim = common.positive_int("PEPEmbedding", "output_dim", output_dim)
        if granularity not in GRANULARITIES:
            raise ValueError(f"PEPEmbedding: `granularity` must be one of {GRANULARITIES}; got {granularity!r}.")
        self.granularity = granularity
        if not (isinstance(threshold_init, numbers.Real) and math.isfinite(threshold_init)):
            raise ValueError(f"PEPEmbedding: `threshold_init` must be a finite number; got {threshold_init!r}.")
        self.threshold_init = float(threshold_init)
        if not (isinstance(threshold_scale, numbers.Real) and math.isfinite(threshold_scale) and threshold_scale > 0):
            raise ValueError(f"PEPEmbedding: `threshold_scale` must be a finite number > 0; got {threshold_scale!r}.")
        self.threshold_scale = float(threshold_scale)
        self.field_sizes = self._checked_field_sizes(field_sizes)
        self.embeddings_initializer = tf.keras.initializers.get(embeddings_initializer)

    def _checked_field_sizes(self, field_sizes):
        if self.granularity not in _FIELD_GRANULARITIES:
            if field_sizes is not None:
                raise ValueError(f"PEPEmbedding: `field_sizes` is used by the granularities {_FIELD_GRANULARITIES} "
                                 f"only; got it with granularity {self.granularity!r}.")
            return None
        if field_sizes is None:
            raise ValueError(f"PEPEmbedding: granularity {self.granularity!r} needs `field_sizes` "
                             "(the number of rows of each field).")
        sizes = [common.positive_int("PEPEmbedding", "field_sizes[i]", size) for size in field_sizes]
        if sum(sizes) != self.input_dim:
            raise ValueError(f"PEPEmbedding: `field_sizes` sum to {sum(sizes)}; they must sum to "
                             f"input_dim = {self.input_dim}.")
        return sizes

    def threshold_shape(self):
        """The shape of ``s`` at this granularity."""
        n, d, fields = self.input_dim, self.output_dim, len(self.field_sizes or ())
        return {
            "global": (),
            "dimension": (d,),
            "feature": (n, 1),
            "feature_dim": (n, d),
            "field": (fields, 1),
            "field_dim": (fields, d),
        }[self.granularity]

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer, trainable=True)
        self.threshold = self.add_weight(
            name="threshold", shape=self.threshold_shape(),
            initializer=tf.keras.initializers.Constant(self.threshold_init / self.threshold_scale), trainable=True)
        if self.field_sizes is not None:
            # Row r belongs to field searchsorted(field_starts[1:], r, side="right").
            self._field_boundaries = tf.constant(np.cumsum(self.field_sizes)[:-1], tf.int64)
        super().build(input_shape)

    def _thresholds_of(self, ids):
        """``s`` for each id's row (per-row granularities gather, so their gradient stays sparse)."""
        return self.threshold_scale * self._trained_thresholds_of(ids)

    def _trained_thresholds_of(self, ids):
        if self.granularity in ("global", "dimension"):
            return self.threshold
        if self.granularity in ("feature", "feature_dim"):
            return _lookup(self.threshold, ids)
        flat_ids = tf.reshape(tf.cast(ids, tf.int64), [-1])
        fields = tf.searchsorted(self._field_boundaries, flat_ids, side="right", out_type=tf.int64)
        return _lookup(self.threshold, tf.reshape(fields, tf.shape(ids)))

    def thresholds(self):
        """``s = threshold_scale · θ`` (NumPy, of ``threshold_shape()``)."""
        self._require_built("thresholds")
        return self.threshold_scale * self.threshold.numpy()

    def call(self, ids):
        rows = _lookup(self.embeddings, ids)
        pruned = soft_threshold(rows, tf.sigmoid(self._thresholds_of(ids)))
        return tf.cast(pruned, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.output_dim])

    def pruned_table(self):
        """``V̂`` for every row (NumPy, ``input_dim × output_dim``): the exported table."""
        self._require_built("pruned_table")
        return self(tf.range(self.input_dim, dtype=tf.int64)).numpy()

    def mask(self):
        """The entries alive: ``V̂ != 0`` (NumPy bool)."""
        return self.pruned_table() != 0

    def inference_parameter_count(self):
        """The number of non-zero entries of ``V̂``."""
        return int(np.count_nonzero(self.pruned_table()))

    def pruned_embedding(self):
        """A plain ``tf.keras.layers.Embedding`` holding ``V̂`` (the dense pruned export)."""
        return common.embedding_holding(self.pruned_table(), name=self.name, dtype=self.dtype)

    def serving_layer(self):
        """What ``tf_freqsgd.export.export_for_serving`` writes in place of this layer: the pruned
        table, as its non-zero entries (``SparseTableEmbedding``) when that stores fewer bytes."""
        return common.smaller_serving_table(self.pruned_table(), name=self.name, dtype=self.dtype)

    def _require_built(self, method):
        if not self.built:
            raise RuntimeError(f"PEPEmbedding {self.name!r}: call the layer (or build it) before {method}().")

    def get_config(self):
        config = super().get_config()
        config.update({
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "granularity": self.granularity,
            "threshold_init": self.threshold_init,
            "threshold_scale": self.threshold_scale,
            "field_sizes": self.field_sizes,
            "embeddings_initializer": tf.keras.initializers.serialize(self.embeddings_initializer),
        })
        return config


@tf.keras.utils.register_keras_serializable(package="tf_freqsgd")
class MaskedEmbedding(tf.keras.layers.Layer):
    r"""Embedding ``V ⊙ M`` with a fixed 0/1 mask ``M``: PEP's retrain phase.

    ``∂(V ⊙ M)/∂V = M``, so masked entries get exactly zero gradient: they start at zero
    (``from_mask`` multiplies the initial values by the mask) and stay zero under any optimizer
    whose step is zero on a zero gradient with zero state (SGD, CounterSGD with or without weight
    decay, Adagrad, row-wise Adagrad, Adam). The lookup gathers rows, so ``V``'s gradient is
    ``IndexedSlices``.

    Build it with ``from_mask(mask, initial_embeddings)`` or ``from_saved(directory, name,
    target_sparsity)`` (the files ``PEPSparsityCallback`` writes); the plain constructor, which
    starts with every entry alive, is what ``get_config`` / loading use before the saved weights
    (mask included) are restored.
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.input_dim = common.positive_int("MaskedEmbedding", "input_dim", input_dim)
        self.output_dim = common.positive_int("MaskedEmbedding", "output_dim", output_dim)
        self.embeddings_initializer = tf.keras.initializers.get(embeddings_initializer)

    @classmethod
    def from_mask(cls, mask, initial_embeddings=None, **kwargs):
        """A layer whose entries are ``initial_embeddings`` where ``mask`` is true and 0 elsewhere
        (``None``: the values ``embeddings_initializer`` draws for a new table)."""
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"MaskedEmbedding.from_mask: `mask` must be a matrix (rows, width); "
                             f"got shape {mask.shape}.")
        if initial_embeddings is not None and np.shape(initial_embeddings) != mask.shape:
            raise ValueError(f"MaskedEmbedding.from_mask: `mask` {mask.shape} and `initial_embeddings` "
                             f"{np.shape(initial_embeddings)} must be matrices of one shape (rows, width).")
        if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
            raise ValueError("MaskedEmbedding.from_mask: `mask` must be boolean or hold only 0 and 1.")
        mask = mask.astype(bool)
        layer = cls(mask.shape[0], mask.shape[1], **kwargs)
        layer.build((None,))
        if initial_embeddings is None:
            initial_embeddings = layer.embeddings.numpy()
        layer.mask.assign(mask)
        layer.embeddings.assign(np.where(mask, initial_embeddings, 0).astype(layer.embeddings.dtype.as_numpy_dtype))
        return layer

    @classmethod
    def from_saved(cls, directory, layer_name, target_sparsity, **kwargs):
        """``from_mask`` on the mask ``PEPSparsityCallback`` saved for ``layer_name`` at
        ``target_sparsity`` and the values it saved at its rewind point; the layer takes that name
        unless told."""
        paths = {mask_path(directory, layer_name, target_sparsity):
                 f"was target sparsity {target_sparsity} reached while training {layer_name!r}?",
                 initial_embeddings_path(directory, layer_name): "did the training reach the callback's rewind point?"}
        for path, question in paths.items():
            if not os.path.exists(path):
                raise FileNotFoundError(f"MaskedEmbedding.from_saved: {path} does not exist ({question}).")
        kwargs.setdefault("name", layer_name)
        return cls.from_mask(*(np.load(path) for path in paths), **kwargs)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer, trainable=True)
        self.mask = self.add_weight(
            name="mask", shape=(self.input_dim, self.output_dim), dtype=tf.bool,
            initializer=lambda shape, dtype: tf.ones(shape, dtype), trainable=False)
        super().build(input_shape)

    def call(self, ids):
        rows = _lookup(self.embeddings, ids) * tf.cast(_lookup(self.mask, ids), self.embeddings.dtype)
        return tf.cast(rows, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.output_dim])

    def pruned_table(self):
        """``V ⊙ M`` (NumPy): the exported table."""
        return np.where(self.mask.numpy(), self.embeddings.numpy(), 0)

    def inference_parameter_count(self):
        """The number of entries the mask keeps."""
        return int(np.count_nonzero(self.mask.numpy()))

    def pruned_embedding(self):
        """A plain ``tf.keras.layers.Embedding`` holding ``V ⊙ M`` (the dense pruned export)."""
        return common.embedding_holding(self.pruned_table(), name=self.name, dtype=self.dtype)

    def serving_layer(self):
        """What ``tf_freqsgd.export.export_for_serving`` writes in place of this layer: the pruned
        table, as its non-zero entries (``SparseTableEmbedding``) when that stores fewer bytes."""
        return common.smaller_serving_table(self.pruned_table(), name=self.name, dtype=self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": tf.keras.initializers.serialize(self.embeddings_initializer),
        })
        return config


def initial_embeddings_path(directory, layer_name):
    """Where ``PEPSparsityCallback`` saves ``layer_name``'s table at the rewind point (the retrain's start)."""
    return os.path.join(directory, f"{layer_name}.initial.npy")


def mask_path(directory, layer_name, target_sparsity):
    """Where ``PEPSparsityCallback`` saves ``layer_name``'s mask when ``target_sparsity`` is reached."""
    return os.path.join(directory, f"{layer_name}.mask-sparsity-{target_sparsity:g}.npy")


class PEPSparsityCallback(tf.keras.callbacks.Callback):
    """Records the non-zero entries of the model's ``PEPEmbedding`` layers and saves their masks.

    At the end of every epoch (and every ``every_n_batches`` batches, when set) it measures,
    over all the layers together,

        nonzero = Σ_layers count(V̂ != 0),    sparsity = 1 − nonzero / Σ_layers (n · d),

    appends ``{"epoch", "batches", "nonzero", "sparsity"}`` to ``history`` (``epoch`` and
    ``batches``: the epochs completed and batches trained so far, counted across ``fit`` calls; an
    epoch's end is measured even when a batch measure just ran), and puts
    ``pep_nonzero`` and ``pep_sparsity`` in the epoch's logs. The first time ``sparsity``
    reaches a target, each layer's mask ``V̂ != 0`` is saved to
    ``mask_path(directory, layer.name, target)`` and the measurement is kept in
    ``reached[target]``. Each layer's table at the rewind point (as training first starts, or
    after ``rewind_epochs`` epochs) is saved to ``initial_embeddings_path(directory, layer.name)``:
    the values the lottery-ticket retrain (``MaskedEmbedding.from_saved``) starts from.

    Args:
      target_sparsity: a number in (0, 1), or a sequence of them.
      directory: where the masks and the rewind point's tables are written (created if absent).
      layers: the ``PEPEmbedding`` layers to measure; default: every one in the model.
      every_n_batches: also measure every this many batches (each measure reads the whole tables).
      rewind_epochs: the rewind point: 0 (default) saves the tables as training first starts;
        ``k > 0`` saves them at the end of the ``k``-th epoch (counted across ``fit`` calls).
    """

    def __init__(self, target_sparsity, directory, layers=None, every_n_batches=None, rewind_epochs=0):
        super().__init__()
        targets = [target_sparsity] if isinstance(target_sparsity, numbers.Real) else list(target_sparsity)
        for target in targets:
            if not (isinstance(target, numbers.Real) and 0.0 < target < 1.0):
                raise ValueError(f"PEPSparsityCallback: every `target_sparsity` must be a number in (0, 1); "
                                 f"got {target!r}.")
        if not targets:
            raise ValueError("PEPSparsityCallback: `target_sparsity` is empty.")
        self.targets = sorted(float(target) for target in targets)
        self.directory = os.fspath(directory)
        self.every_n_batches = (None if every_n_batches is None
                                else common.positive_int("PEPSparsityCallback", "every_n_batches", every_n_batches))
        if isinstance(rewind_epochs, bool) or not isinstance(rewind_epochs, numbers.Integral) or rewind_epochs < 0:
            raise ValueError(f"PEPSparsityCallback: `rewind_epochs` must be an integer >= 0; got {rewind_epochs!r}.")
        self.rewind_epochs = int(rewind_epochs)
        self.layers = list(layers) if layers is not None else None
        self.history = []
        self.reached = {}
        self._epochs = 0
        self._batches = 0
        self._rewind_saved = False

    def on_train_begin(self, logs=None):
        if self.layers is None:
            self.layers = [module for module in self.model.submodules if isinstance(module, PEPEmbedding)]
        if not self.layers:
            raise ValueError("PEPSparsityCallback: the model has no PEPEmbedding layer to measure.")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"PEPSparsityCallback: layer names must be distinct (the files are named after "
                             f"them); got {names}.")
        os.makedirs(self.directory, exist_ok=True)
        self._save_rewind_point()

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.every_n_batches and self._batches % self.every_n_batches == 0:
            self.measure()

    def on_epoch_end(self, epoch, logs=None):
        self._epochs += 1
        self._save_rewind_point()
        point = self.measure()
        if logs is not None:
            logs["pep_nonzero"] = point["nonzero"]
            logs["pep_sparsity"] = point["sparsity"]

    def _save_rewind_point(self):
        if not self._rewind_saved and self._epochs == self.rewind_epochs:
            for layer in self.layers:
                np.save(initial_embeddings_path(self.directory, layer.name), layer.embeddings.numpy())
            self._rewind_saved = True

    def measure(self):
        """Measures now, saves the masks of targets first reached, and returns the record."""
        masks = {layer.name: layer.mask() for layer in self.layers}
        nonzero = sum(int(np.count_nonzero(mask)) for mask in masks.values())
        total = sum(mask.size for mask in masks.values())
        point = {"epoch": self._epochs, "batches": self._batches, "nonzero": nonzero,
                 "sparsity": 1.0 - nonzero / total}
        self.history.append(point)
        for target in self.targets:
            if target not in self.reached and point["sparsity"] >= target:
                for name, mask in masks.items():
                    np.save(mask_path(self.directory, name, target), mask)
                self.reached[target] = point
        return point
