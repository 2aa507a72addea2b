"""Serving export of Keras models whose embeddings are TFRA dynamic tables.

A SavedModel of a model built on ``de.keras.layers.Embedding`` runs ``TFRA>`` custom ops, which
stock TensorFlow and TF Serving do not register ("Op type not registered"). ``export_for_serving``
freezes every dynamic table into a ``StaticEmbedding`` -- the table's keys (sorted) and rows held
in ordinary variables, looked up with ``tf.searchsorted`` and ``tf.gather`` -- and writes a
SavedModel that loads with TensorFlow alone.

Other layers that want a different form in serving say so with a ``serving_layer()`` method, whose
result replaces them in the export: ``tf_freqsgd.layers.MLETEmbedding`` returns its collapsed
``n × d`` table, ``PEPEmbedding`` and ``MaskedEmbedding`` their pruned tables.

Ids missing from a table get what the TFRA layer returns for them when that value is fixed: a
constant initializer's row (``Zeros``, ``Constant``, a number). TFRA draws missing ids' values
from the initializer on every lookup, so a random initializer (the layer's default
``RandomNormal``) has no fixed value to freeze; those ids get zeros, with a warning.
"""

import os
import shutil
import tempfile
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from tf_freqsgd import _compat
from tf_freqsgd.layers.static_embedding import StaticEmbedding
from tf_freqsgd.optimizers import row_storage

# Op types no stock TensorFlow registers: TFRA's namespace, and this package's fused optimizer ops
# (tf_freqsgd/cc/ops/counter_ops.cc), which an exported forward pass never needs.
_NON_STOCK_OP_PREFIXES = (
    "TFRA>", "ResourceSparseApplyCounterSGD", "ResourceSparseApplyRowwiseAdagradCounter")

def export_for_serving(model, export_dir, *, input_signature=None, overwrite=False):
    """Writes ``model`` as a SavedModel that stock TensorFlow and TF Serving load, and returns
    the Keras model it saved.

    Every ``de.keras.layers.Embedding`` of ``model`` (nested Functional and Sequential models
    included) becomes a ``StaticEmbedding`` holding the table's current contents, and every layer
    with a ``serving_layer()`` method becomes what that returns (``tf_freqsgd.layers``' MLET and
    PEP layers: their ``n × d`` tables); the other layers are shared with ``model``, not copied,
    so their weights are the trained ones. The SavedModel's ``serving_default`` signature takes
    the model's inputs, keyed by input name, and returns a dict of its outputs, keyed by output
    name.

    Args:
      model: a Functional or Sequential ``tf.keras.Model`` built on ``tf.keras.Input``.
        Subclassed models are refused: their layer graph cannot be rewritten.
      export_dir: the directory to write; it must not exist unless ``overwrite``.
      input_signature: optional list of ``tf.TensorSpec``, one per model input in
        ``model.inputs`` order, to serve other shapes or dtypes than the model's inputs
        (int32 ids, say); names are taken from the model's inputs.
      overwrite: replace an existing ``export_dir``.

    Raises:
      TypeError: ``model`` is not a Functional or Sequential model, or holds a dynamic
        embedding layer that cannot be frozen (a subclass of ``de.keras.layers.Embedding``,
        non-integer keys, ``max_norm``).
      FileExistsError: ``export_dir`` exists and ``overwrite`` is false.
      RuntimeError: the written graph still holds non-stock ops (a custom layer using a
        dynamic table some other way); nothing is left at ``export_dir`` then.
    """
    _check_graph_model(model)
    if os.path.exists(export_dir) and not overwrite:
        raise FileExistsError(f"{export_dir} exists; pass overwrite=True to replace it.")
    serving_model = _freeze_dynamic_embeddings(model)
    serve = _serving_function(serving_model, _serving_input_specs(model, input_signature))
    _save_verified(serving_model, serve, export_dir)
    return serving_model


def _check_graph_model(model):
    """Raises unless ``model`` is Functional or Sequential with known inputs."""
    # clone_model rewrites a layer graph; a subclassed model's call() is opaque Python.
    # (_is_graph_network is what clone_model itself tests.)
    if not isinstance(model, tf.keras.Model) or not _compat.is_graph_model(model):
        raise TypeError(
            f"export_for_serving supports Functional and Sequential tf.keras models built on "
            f"tf.keras.Input; got {type(model).__name__}. Rebuild a subclassed model as a "
            "Functional one over the same layers to export it.")


def _freeze_dynamic_embeddings(model):
    """A copy of ``model`` with each dynamic embedding frozen and every other layer shared."""
    return tf.keras.models.clone_model(model, clone_function=_frozen_or_shared)


def _frozen_or_shared(layer):
    """clone_model's per-layer step: freeze dynamic embeddings, put a layer's ``serving_layer()``
    in its place, recurse into models holding either, share every other layer (and so its
    trained weights)."""
    if _is_dynamic_embedding(layer):
        return static_embedding_from(layer)
    if _has_serving_form(layer):
        return layer.serving_layer()
    if isinstance(layer, tf.keras.Model) and any(map(_needs_rewrite, layer.submodules)):
        _check_graph_model(layer)
        return _freeze_dynamic_embeddings(layer)
    return layer


def _has_serving_form(layer):
    return callable(getattr(layer, "serving_layer", None))


def _is_dynamic_embedding(layer):
    """A ``de.keras.layers.Embedding`` (never, where TFRA is not installed: Keras 3, say)."""
    embedding = row_storage.dynamic_embedding_layer()
    return embedding is not None and isinstance(layer, embedding)


def _needs_rewrite(module):
    return _is_dynamic_embedding(module) or _has_serving_form(module)


def frozen_table(layer):
    """``(keys, rows, default_row)``: the current contents of a ``de.keras.layers.Embedding`` as
    NumPy arrays, and the row its lookups give ids missing from it (see ``_missing_id_row``)."""
    _check_freezable(layer)
    keys, rows = layer.params.export()
    keys = keys.numpy()
    return keys, rows.numpy(), _missing_id_row(layer, keys)


def static_embedding_from(layer):
    """A ``StaticEmbedding`` holding the current contents of a ``de.keras.layers.Embedding``."""
    return StaticEmbedding(*frozen_table(layer), name=layer.name, dtype=layer.params.value_dtype)


def _check_freezable(layer):
    """Raises unless ``layer``'s lookup is exactly what a StaticEmbedding computes."""
    # Subclasses change call() (SquashedEmbedding pools, FieldWiseEmbedding sums by field,
    # HvdAllToAllEmbedding shards across workers): freezing the lookup alone would be wrong.
    if type(layer) is not row_storage.dynamic_embedding_layer():
        raise TypeError(
            f"Layer {layer.name!r} is a {type(layer).__name__}; export_for_serving freezes "
            "de.keras.layers.Embedding only.")
    if not layer.params.key_dtype.is_integer:
        raise TypeError(f"Layer {layer.name!r} has {layer.params.key_dtype.name} keys; "
                        "export_for_serving freezes integer-keyed tables only.")
    # TFRA clips looked-up rows in ModelMode.TRAIN but not in INFERENCE: no single answer to freeze.
    if layer.max_norm is not None:
        raise TypeError(f"Layer {layer.name!r} sets max_norm, which export_for_serving does not "
                        "support.")


def _missing_id_row(layer, keys):
    """The row TFRA returns for ids missing from ``layer``'s table, or zeros if it is random.

    TFRA fills missing ids' rows from ``initializer([n, dim])`` at every lookup (or from the
    table's static default when the initializer is a plain number). A random initializer makes
    the row a function of the id's position in the batch, not of the id: tf_keras initializers
    return the same matrix at every call, TF's draw anew. Looking up two absent ids twice tells
    a fixed row (four equal rows) from such rows.
    """
    absent_ids = np.setdiff1d(np.arange(len(keys) + 2), keys)[:2]
    absent_ids = tf.constant(absent_ids, dtype=layer.params.key_dtype)
    first, second = (layer.params.lookup(absent_ids).numpy() for _ in range(2))
    if np.array_equal(first, second) and np.array_equal(first[0], first[1]):
        return first[0]
    warnings.warn(
        f"Layer {layer.name!r}: TFRA fills ids missing from its table from its "
        f"{type(layer.params.initializer).__name__} initializer, which gives no fixed row per id; "
        "the exported model returns zeros for them. Use a constant initializer (Zeros, say) to "
        "make serving match training-time inference on such ids.")
    return np.zeros_like(first[0])


def _serving_input_specs(model, input_signature):
    """The model's input specs, or ``input_signature``'s, named after the model's inputs."""
    if input_signature is None:
        input_signature = [tf.TensorSpec(tensor.shape, tensor.dtype) for tensor in model.inputs]
    if len(input_signature) != len(model.inputs):
        raise ValueError(f"input_signature has {len(input_signature)} specs; the model has "
                         f"{len(model.inputs)} inputs {_compat.input_names(model)}.")
    # Signature input keys come from the spec names: use the model's input names, as Keras does.
    return [tf.TensorSpec(spec.shape, spec.dtype, name=name)
            for spec, name in zip(input_signature, _compat.input_names(model))]


def _serving_function(serving_model, input_specs):
    """The serving_default function: positional inputs in, a dict of named outputs out."""
    @tf.function(input_signature=input_specs)
    def serve(*inputs):
        outputs = serving_model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        return dict(zip(serving_model.output_names, tf.nest.flatten(outputs)))

    return serve


def _save_verified(serving_model, serve, export_dir):
    """Saves into a staging directory beside ``export_dir`` and moves it in place once its graph
    is checked, so ``export_dir`` never holds a partial or unservable model (TF Serving polls
    version directories)."""
    export_dir = os.path.abspath(export_dir)
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    staging_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.staging-", dir=parent)
    try:
        tf.saved_model.save(serving_model, staging_dir, signatures={"serving_default": serve})
        _check_stock_ops(staging_dir)
        if os.path.exists(export_dir):
            shutil.rmtree(export_dir)
        os.rename(staging_dir, export_dir)
    finally:
        if os.path.exists(staging_dir):
            shutil.rmtree(staging_dir)


def _check_stock_ops(saved_model_dir):
    """Raises if the SavedModel needs ops that stock TensorFlow does not register."""
    # One node per op type is enough to name the layer (its scope) that brought the op in.
    node_of_op = {}
    for op_type, node_name in saved_model_ops(saved_model_dir):
        if op_type.startswith(_NON_STOCK_OP_PREFIXES):
            node_of_op.setdefault(op_type, node_name)
    if node_of_op:
        found = ", ".join(f"{op_type} (node {node_of_op[op_type]!r})" for op_type in sorted(node_of_op))
        raise RuntimeError(
            f"The exported graph still needs ops stock TensorFlow lacks: {found}. A layer other "
            "than de.keras.layers.Embedding uses a dynamic table; export_for_serving freezes "
            "de.keras.layers.Embedding layers only.")


def saved_model_ops(saved_model_dir):
    """(op type, node name) of every node in a SavedModel's graphs and their function library."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    for meta_graph in saved_model.meta_graphs:
        graph = meta_graph.graph_def
        yield from ((node.op, node.name) for node in graph.node)
        for function in graph.library.function:
            yield from ((node.op, node.name) for node in function.node_def)
