"""Saving and restoring Keras models with TFRA dynamic embeddings and their optimizer state.

What saves what (TFRA 0.8.1, tf_keras 2.16):

* ``tf.train.Checkpoint(model=model, optimizer=optimizer)`` saves every table: the embeddings,
  TFRA's slots and this package's state tables (a row's counter and accumulator in one), which
  the optimizer tracks. A restore into a freshly built model and optimizer is exact, before or
  after the optimizer is built (tables made later are restored when they are made). A checkpoint
  of the former layout (a width-1 table a state) fails with ``LegacyStateLayoutError`` before any
  optimizer state is written: at the restore when the optimizer is built, else at its build.
* ``model.save(dir)`` (SavedModel) writes the same tables into ``dir/variables``. But TFRA's
  ``Embedding`` writes a config it cannot read back (its initializer and partitioner are passed
  to the constructor serialized), so ``tf.keras.models.load_model`` silently *revives* the layer
  from its traces: it predicts as the saved model did, but has no ``de.Variable`` and cannot be
  trained. ``load_model`` here rebuilds the model from its config with real TFRA layers and
  restores the tables and the optimizer state.
* TFRA's ``FileSystemSaver`` (on the layer's ``kv_creator``, which the state tables inherit)
  writes every table, ours included, to ``TFRADynamicEmbedding/`` files beside the checkpoint, by
  all the paths above. TFRA's ``de.keras.models.de_save_model`` writes the SavedModel with
  TensorFlow's bundled Keras, which tf_keras cannot load as a model: rebuild the model in code and
  ``model.load_weights(dir + "/variables/variables")``. ``DEHvdModelCheckpoint`` needs Horovod.
* The ``.keras`` format saves no TFRA table at all (they are not Keras weights).
* TFRA restores a table's shard ``i`` from the checkpoint's shard ``i``, and routes an id to
  shard ``id mod shards``: into another number of shards (``devices``, parameter servers) it
  loses or misroutes rows without a word. ``reshard_tables``, after the restore, puts every
  saved row back where its id now belongs.
* TFRA matches tables by name, in checkpoints as in its variable store: restore into layers of
  the names they were saved with. ``check_checkpoint`` says so, before anything is restored,
  when the names or the widths do not match (TFRA's own error, on a width mismatch, comes after
  part of the state is restored).
"""

import os
import re
import warnings

import tensorflow as tf
import tf_keras

from tf_freqsgd.optimizers.row_storage import (LegacyStateLayoutError, StateColumn, dynamic_embedding, is_dynamic,
                                               layer_table_exists, own_tables)

# The config keys of TFRA's layers; tf_keras' own Embedding has "input_dim" instead.
_TFRA_KEY = "embedding_size"
_LAYER_NAMES = ("Embedding", "SquashedEmbedding")
_TABLE_KEY = re.compile(r"(?:^|/)tables_of_(?P<name>[^/]+)/\d+/\.ATTRIBUTES/table-(?P<part>values|shard_upsert_restore)$")
_SHARD_KEY = re.compile(r"(?:^|/)tables_of_(?P<name>[^/]+)/(?P<shard>\d+)/\.ATTRIBUTES/table-(?P<part>keys|values)$")


def _named(value, what, lookup):
    """A callable or class serialized by name (a string, or a Keras dict naming it)."""
    if value is None or callable(value):
        return value
    name = value.get("config") if isinstance(value, dict) else value
    if not isinstance(name, str):
        raise ValueError(f"Cannot read the {what} {value!r} of a TFRA embedding's config.")
    found = lookup(name) or tf_keras.saving.get_registered_object(name)
    if found is None:
        raise ValueError(
            f"Unknown {what} {name!r} in a TFRA embedding's config: register it with "
            "`tf.keras.utils.register_keras_serializable` or pass it in `custom_objects`."
        )
    return found


def tfra_layer_config(config, kv_creator=None):
    """The constructor arguments of a TFRA embedding layer from its saved ``config``.

    ``kv_creator`` is used when the config records none (TFRA records it only with
    ``keep_distribution=True``): pass the one the model was trained with, e.g. with a
    ``de.FileSystemSaver``.
    """
    from tensorflow_recommenders_addons.dynamic_embedding.python.ops import dynamic_embedding_variable

    de = dynamic_embedding()
    config = dict(config)
    for key in ("key_dtype", "value_dtype"):
        if config.get(key) is not None:
            config[key] = tf.as_dtype(config[key])
    if isinstance(config.get("initializer"), (dict, str)):
        config["initializer"] = tf_keras.initializers.deserialize(config["initializer"])
    if isinstance(config.get("max_norm"), (dict, str)):
        config["max_norm"] = tf_keras.constraints.deserialize(config["max_norm"])
    default_partitioner = dynamic_embedding_variable.default_partition_fn
    config["partitioner"] = _named(
        config.get("partitioner"), "partitioner",
        lambda name: default_partitioner if name == default_partitioner.__name__ else None,
    ) or default_partitioner
    config["restrict_policy"] = _named(config.get("restrict_policy"), "restrict_policy",
                                       lambda name: getattr(de, name, None))
    if config.get("kv_creator") is None:
        config["kv_creator"] = kv_creator
    elif not isinstance(config["kv_creator"], de.KVCreator):
        raise ValueError(
            "This TFRA embedding was saved with keep_distribution=True, and its kv_creator cannot be "
            "read back from the config: rebuild the model in code and restore it with "
            "`model.load_weights(path + '/variables/variables')`."
        )
    return config


def _warn_if_taken(layer_name):
    """Warns when TFRA will hand the loaded layer the table of a layer made before, of that name."""
    if layer_table_exists(layer_name):
        warnings.warn(
            f"A TFRA table '{layer_name}-parameter' already exists in this process: the loaded layer "
            f"{layer_name!r} shares it (TFRA reuses tables by name), and restoring overwrites it. Load in a fresh "
            "process, or after the model that made it is gone.",
            stacklevel=4,
        )


def _reader(name, kv_creator):
    def from_config(config, custom_objects=None):
        if _TFRA_KEY not in config and hasattr(tf_keras.layers, name):  # tf_keras' own Embedding
            return getattr(tf_keras.layers, name).from_config(config)
        _warn_if_taken(config.get("name"))
        return getattr(dynamic_embedding().keras.layers, name)(**tfra_layer_config(config, kv_creator))

    return type(name, (), {"from_config": staticmethod(from_config)})


def _readers(kv_creator):
    return {name: _reader(name, kv_creator) for name in _LAYER_NAMES}


def custom_objects(kv_creator=None):
    """``custom_objects`` for ``tf.keras.models.load_model`` of a model with TFRA embeddings.

    Maps the class names TFRA's ``Embedding`` and ``SquashedEmbedding`` are saved under to readers
    of their config (tf_keras' own ``Embedding``, saved under the same name, is read as usual).
    ``kv_creator``: as in ``tfra_layer_config``.
    """
    return _readers(kv_creator)


def _variables_prefix(path):
    """The checkpoint prefix of a SavedModel directory, or ``path`` itself (a checkpoint)."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return os.path.join(path, "variables", "variables")
    return path


def load_model(path, custom_objects=None, kv_creator=None, compile=True, options=None):
    """Loads a SavedModel of a Keras model with TFRA embeddings as a trainable model.

    The layers are rebuilt from their config (``tf.keras.models.load_model`` alone revives an
    inference-only copy), the tables restored, and, when ``compile``, the optimizer built and its
    state restored (counters, last-seen steps, accumulators, TFRA's slots, the step count), so
    that training resumes exactly where it stopped. ``custom_objects`` are added to this
    module's; ``kv_creator``: the TFRA key-value creator the model was trained with, when it
    was not TFRA's default (e.g. ``de.CuckooHashTableCreator(saver=de.FileSystemSaver())``).

    TFRA's layers must not share their names with layers alive in this process: TFRA would give
    them the same tables. Raises ``ValueError`` for a ``.keras`` or ``.h5`` file, which holds no
    TFRA table.
    """
    path = os.fspath(path)
    if path.endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(
            f"{path!r}: the .keras and HDF5 formats save no TFRA table (they are not Keras weights); "
            "save the model with `model.save(directory)` (SavedModel) or `tf.train.Checkpoint`."
        )
    if kv_creator is None and os.path.isdir(os.path.join(path, "variables", "TFRADynamicEmbedding")):
        raise ValueError(
            f"{path!r} holds TFRA tables saved by a de.FileSystemSaver: pass the model's kv_creator, "
            "e.g. `kv_creator=de.CuckooHashTableCreator(saver=de.FileSystemSaver())`."
        )
    objects = {**_readers(kv_creator), **(custom_objects or {})}
    # TFRA's shadow variables (the batch's rows, empty between steps) are never matched to their
    # checkpointed values; the SavedModel loader would refuse the whole checkpoint for them.
    options = options or tf.saved_model.LoadOptions(allow_partial_checkpoint=True)
    model = tf_keras.models.load_model(path, custom_objects=objects, compile=compile, options=options)
    if not isinstance(model, tf_keras.Model):
        raise ValueError(
            f"{path!r} holds no tf_keras model (TFRA's de_save_model writes one with TensorFlow's "
            "bundled Keras): rebuild the model in code, build its optimizer "
            "(`model.optimizer.build(model.trainable_variables)`) and restore both with "
            "`model.load_weights(path + '/variables/variables')`."
        )
    if compile and model.optimizer is not None:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(_variables_prefix(path)).expect_partial()
    return model


def _unescape(name):
    # Checkpoint keys write "/" in an object's name as ".S" and "." as "..".
    return re.sub(r"\.(S|\.)", lambda m: "/" if m.group(1) == "S" else ".", name)


def _checkpoint_tables(path):
    """``{table name: width or None}`` of the TFRA tables in a checkpoint (None: saved in files)."""
    tables = {}
    for key, shape in tf.train.list_variables(_variables_prefix(path)):
        match = _TABLE_KEY.search(key)
        if match:
            name = _unescape(match["name"])  # one key per shard: any gives the width
            if tables.get(name) is None:
                tables[name] = shape[-1] if match["part"] == "values" and len(shape) == 2 else None
    return tables


def _model_tables(model, optimizer):
    """``{table name: width}`` of the model's dynamic embeddings, and of the optimizer's own
    tables once it is built."""
    tables = {}
    for variable in model.variables:
        if is_dynamic(variable):
            tables[variable.params.name] = variable.params.dim
    for _, slots in getattr(optimizer, "dynamic_tables", {}).values():
        for table in own_tables(slots):
            tables[table.name] = table.dim
    return tables


def _legacy_state_tables(optimizer):
    """``{former width-1 table name: the table its state is in now}`` of ``optimizer``'s multi-state tables."""
    legacy = {}
    for variable, slots in getattr(optimizer, "dynamic_tables", {}).values():
        for name, state in slots.items():
            if isinstance(state, StateColumn):
                legacy[f"{variable.params.name}-{name}"] = state.table.name
    return legacy


def check_checkpoint(path, model, optimizer=None):
    """Raises ``ValueError`` when a checkpoint's TFRA tables do not fit ``model``.

    ``path``: a checkpoint (prefix or directory) or a SavedModel directory. Each dynamic table of
    the checkpoint must be one of the model's (by name, as TFRA matches them) or a table of one
    of them (its optimizer's, named after it), and of the same width. A table of another name
    would silently not be restored; one of another width fails in TFRA's import after part of
    the state is restored. ``optimizer`` defaults to ``model.optimizer``.
    """
    optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    saved = _checkpoint_tables(path)
    legacy = _legacy_state_tables(optimizer)
    for name in sorted(saved):
        if name in legacy:
            raise LegacyStateLayoutError(
                f"The checkpoint {path!r} keeps the optimizer state {name!r} in a table of its own: it was "
                f"written by tf_freqsgd 0.2 or earlier, before a row's states shared one table ({legacy[name]!r}). "
                "Restore it with the tf_freqsgd that wrote it and save again from this version, or restore the "
                "model alone.")
    current = _model_tables(model, optimizer)
    unmatched = sorted(name for name in saved
                       if name not in current and not any(name.startswith((f"{t}-", f"{t}/")) for t in current))
    if unmatched:
        raise ValueError(
            f"The checkpoint {path!r} holds TFRA tables {unmatched} that match no table of the model "
            f"(its tables: {sorted(current)}). TFRA restores tables by name: build the layers with "
            "the names they were saved with."
        )
    for name, width in sorted(saved.items()):
        if width is not None and name in current and current[name] != width:
            raise ValueError(
                f"The checkpoint {path!r} holds TFRA table {name!r} of width {width}; the model's has "
                f"width {current[name]}."
            )


def _saved_shards(path):
    """``{table name: {shard: {"keys": checkpoint key, "values": checkpoint key}}}``."""
    shards = {}
    for key, _ in tf.train.list_variables(_variables_prefix(path)):
        match = _SHARD_KEY.search(key)
        if match:
            parts = shards.setdefault(_unescape(match["name"]), {}).setdefault(int(match["shard"]), {})
            parts[match["part"]] = key
    return shards


def reshard_tables(path, root):
    """After ``tf.train.Checkpoint(...).restore(path)``: every TFRA table reachable from ``root``
    (a model, an optimizer, a ``tf.train.Checkpoint``) whose number of shards differs from the
    checkpoint's gets all its saved rows again, each in the shard its id belongs to now. Tables
    of the same number of shards are left as restored. Returns the names of the tables re-sharded.

    Embeddings, TFRA's slots and this package's counter and accumulator tables alike; under
    ``ParameterServerStrategy`` the rows go to the parameter servers the tables now span.
    """
    saved = _saved_shards(path)
    reader = tf.train.load_checkpoint(_variables_prefix(path))
    resharded = []
    for table in tf.train.TrackableView(root).descendants():
        if not isinstance(table, dynamic_embedding().Variable) or table.name not in saved:
            continue
        shards = saved[table.name]
        if len(shards) == len(table.tables):
            continue
        keys = tf.concat([reader.get_tensor(shards[index]["keys"]) for index in sorted(shards)], 0)
        values = tf.concat([reader.get_tensor(shards[index]["values"]) for index in sorted(shards)], 0)
        table.clear()
        table.upsert(keys, tf.reshape(values, [-1, table.dim]))
        resharded.append(table.name)
    return resharded
