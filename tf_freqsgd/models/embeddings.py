"""Embedding layers of the example models, by kind.

Kinds (``EMBEDDING_KINDS``), each mapping ids in ``[0, input_dim)`` to ``output_dim`` floats:

* ``"table"``: ``tf.keras.layers.Embedding``.
* ``"dynamic"``: a TFRA ``de.keras.layers.Embedding``, a hash table keyed by int64 id whose rows
  appear as ids are trained (``input_dim`` only sizes its first allocation). tf_freqsgd's
  optimizers keep their counters in width-1 tables keyed by the same ids.
* ``"mlet"``: ``tf_freqsgd.layers.MLETEmbedding``, trained as an ``input_dim × inner_dim`` table
  times an ``inner_dim × output_dim`` projection, served collapsed (option ``inner_dim``).
* ``"pep"``: ``tf_freqsgd.layers.PEPEmbedding``, a table pruned by learnable per-entry thresholds,
  served as the dense pruned table (options ``granularity``, ``threshold_init``).

Every kind starts its id-indexed rows at ``U(-init_scale, init_scale)`` (tf_keras' ``Embedding``
default, ``init_scale = 0.05``). A TFRA table draws a new id's row when the id is first
trained; until then every lookup of it draws a new random row (see ``seed_rows``).

``tf_freqsgd.export.export_for_serving`` turns each kind into stock TensorFlow ops: it freezes
TFRA tables and puts MLET's and PEP's ``serving_layer()`` (collapsed, pruned) in their place.
"""

import numpy as np
import tensorflow as tf

from tf_freqsgd.choices import EMBEDDING_KINDS
from tf_freqsgd.optimizers.row_storage import dynamic_embedding, layer_table_exists
from tf_freqsgd.layers import IdIndex, MLETEmbedding, PEPEmbedding

DEFAULT_INIT_SCALE = 0.05

_OPTIONS = {"table": (), "dynamic": ("devices",), "mlet": ("inner_dim",), "pep": ("granularity", "threshold_init")}


def make_embedding(kind, input_dim, output_dim, *, name, init_scale=DEFAULT_INIT_SCALE, seed=None, **options):
    """An embedding layer of ``kind`` for ``input_dim`` ids of width ``output_dim``.

    Args:
      kind: one of ``EMBEDDING_KINDS``.
      input_dim: number of ids (a TFRA table's initial capacity).
      output_dim: embedding width.
      name: the layer's name. A TFRA layer takes it the first time in a process, then
        ``name_1``, ``name_2``...: TFRA tables of one name share their rows within a process
        (and checkpoints match tables by name).
      init_scale: id-indexed rows start at ``U(-init_scale, init_scale)``.
      seed: seed of that initializer (None: from TensorFlow's global seed).
      **options: ``inner_dim`` (``"mlet"``, required); ``granularity``, ``threshold_init``
        (``"pep"``, optional); ``devices`` (``"dynamic"``, optional: the devices the TFRA table is
        spread over, e.g. the parameter servers). Table takes none.
    """
    if kind not in EMBEDDING_KINDS:
        raise ValueError(f"Unknown embedding kind {kind!r}; expected one of {EMBEDDING_KINDS}.")
    unexpected = set(options) - set(_OPTIONS[kind])
    if unexpected:
        raise ValueError(f"Embedding kind {kind!r} takes no option {sorted(unexpected)}; "
                         f"its options: {list(_OPTIONS[kind]) or 'none'}.")
    _check_positive_int("input_dim", input_dim)
    _check_positive_int("output_dim", output_dim)
    if kind == "dynamic":
        # TensorFlow's initializer, not tf_keras': it draws anew at every call, so ids first
        # trained in the same batch position do not start from the same row.
        initializer = tf.random_uniform_initializer(-init_scale, init_scale, seed=seed)
        return dynamic_embedding().keras.layers.Embedding(
            output_dim, key_dtype=tf.int64, initializer=initializer, name=_unshared_table_name(name),
            init_capacity=input_dim, devices=options.get("devices"))
    initializer = tf.keras.initializers.RandomUniform(-init_scale, init_scale, seed=seed)
    if kind == "table":
        return tf.keras.layers.Embedding(input_dim, output_dim, embeddings_initializer=initializer, name=name)
    if kind == "mlet":
        if "inner_dim" not in options:
            raise ValueError("Embedding kind 'mlet' needs the option `inner_dim`.")
        return MLETEmbedding(input_dim, output_dim, options["inner_dim"], embeddings_initializer=initializer,
                             name=name)
    return PEPEmbedding(input_dim, output_dim, embeddings_initializer=initializer, name=name, **options)


def _unshared_table_name(name):
    """``name``, or ``name_1``, ``name_2``... when a TFRA table of that name exists in this process
    (TFRA layers of one name share one table). A program building one model gets the same names
    at every run, as its checkpoints need."""
    candidate, suffix = name, 0
    while layer_table_exists(candidate):
        suffix += 1
        candidate = f"{name}_{suffix}"
    return candidate


def _check_positive_int(name, value):
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0):
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")


def is_dynamic_layer(layer):
    """True for a TFRA embedding layer (decided by module: TFRA is imported only when used)."""
    return type(layer).__module__.startswith("tensorflow_recommenders_addons")


def id_tables(layer):
    """The variables of ``layer`` indexed by id, whose rows an optimizer counts and
    ``FrequencySGD``'s frequencies describe: the table (MLET: the inner ``input_dim × inner_dim``
    one; TFRA: its ``de.Variable``), then PEP's per-row thresholds. The layer must be built."""
    if is_dynamic_layer(layer):
        return [layer.params]
    if not isinstance(layer, (tf.keras.layers.Embedding, MLETEmbedding, PEPEmbedding)):
        raise TypeError(f"No id table known for a {type(layer).__name__} ({layer.name!r}).")
    if not layer.built:
        raise ValueError(f"Embedding {layer.name!r} is not built yet: call it on ids first.")
    tables = [layer.embeddings]
    if isinstance(layer, PEPEmbedding) and layer.granularity in ("feature", "feature_dim"):
        tables.append(layer.threshold)
    return tables


def id_table(layer):
    """The first of ``id_tables(layer)``: the rows holding each id's embedding."""
    return id_tables(layer)[0]


def table_name(table):
    """The name ``FrequencySGD``'s ``frequencies`` uses for an id table."""
    return table.name[:-2] if table.name.endswith(":0") else table.name


def seed_rows(layer, ids):
    """Gives each of ``ids`` missing from a TFRA ``layer`` its initial row now, as a fixed table has.

    A TFRA table makes a row when an id is first trained; until then every lookup draws a new
    random row from the initializer. Seeding a retrieval model's candidate catalogue makes every
    candidate's embedding a fixed value, so evaluation and the serving export agree. A no-op for
    other kinds.
    """
    if not is_dynamic_layer(layer):
        return
    ids = tf.constant(np.asarray(ids, np.int64))
    table = layer.params
    _, found = table.lookup(ids, return_exists=True)
    missing = tf.boolean_mask(ids, tf.logical_not(found))
    rows = table.initializer([tf.size(missing), layer.embedding_size])
    table.upsert(missing, tf.cast(rows, table.value_dtype))


def per_row(argument, values, num_rows, what, dtype=np.int64):
    """``values`` as a NumPy array of ``dtype``, one entry per row of a table of ``num_rows``
    ``what``s; a ``ValueError`` naming ``argument`` otherwise."""
    values = np.asarray(values, dtype)
    if values.shape != (num_rows,):
        raise ValueError(f"{argument} has shape {values.shape}; expected ({num_rows},), one per {what}.")
    return values


def rows_with_vectors(layer, num_rows):
    """The ids in ``[0, num_rows)`` that ``layer`` holds a learnt (or seeded) row for: all of them,
    but in a TFRA table only those trained or seeded: any other id's lookup draws a new random row
    (its serving export, a constant one), no vector of its own."""
    if not is_dynamic_layer(layer):
        return np.arange(num_rows)
    keys = layer.params.export()[0].numpy()
    return np.sort(keys[(keys >= 0) & (keys < num_rows)])


def raw_id_index(layer, raw_ids, *, name):
    """An ``IdIndex`` from ``raw_ids[k]`` (the data set's id of row ``k``) to ``k`` for each row of
    ``layer`` that holds a vector (``rows_with_vectors``): a served model's in-graph translation of
    the ids its clients send. Any other id comes out flagged unknown."""
    rows = rows_with_vectors(layer, len(raw_ids))
    return IdIndex(np.asarray(raw_ids, np.int64)[rows], rows, name=name)
