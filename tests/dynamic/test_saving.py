"""Saving and restoring TFRA dynamic embeddings with their optimizer state: tf.train.Checkpoint,
the SavedModel format (tf_keras' load_model and tf_freqsgd.dynamic.saving.load_model), and
TFRA's own FileSystemSaver / de_save_model.

Every restore goes into a freshly built model and optimizer; state is compared exactly, and
training resumed after the restore must match training that never stopped. Models are compiled
with run_eagerly=True: tracing a TFRA train step takes tens of seconds, an eager step a few ms.
"""

import itertools
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import variable_scope

import tf_freqsgd
from tf_freqsgd.dynamic import saving
from tf_freqsgd.optimizers.row_storage import is_table

de = pytest.importorskip("tensorflow_recommenders_addons.dynamic_embedding")

# Ids spread over the whole int64 range, negatives and both extremes included.
IDS = np.array([5, 7, 2**40, -3, -(2**62), 2**62 + 11, -1, 2**63 - 1, -(2**63)], np.int64)
_rng = np.random.default_rng(0)
FEATURES = _rng.choice(IDS, size=(16, 3))
LABELS = _rng.random((16, 1)).astype(np.float32)
BATCH = 4
STEPS = 3  # N: saved after N steps, resumed for N more
DIM = 4
_names = itertools.count()


def unique_name():
    # TFRA layers of one name share their table within a process.
    return f"saving_{next(_names)}"


def release(name):
    """Forgets TFRA's tables named after layer ``name``, so that a fresh layer of that name gets
    fresh tables. TFRA's de.get_variable hands a layer of a known name the existing table, and
    checkpoints match tables by name: a restore in the process that saved needs both."""
    store = variable_scope._get_default_variable_store()._vars
    for key in [key for key in store if key.startswith(f"{name}-parameter")]:
        del store[key]


def build_model(name, kv_creator=None):
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    embedding = de.keras.layers.Embedding(DIM, initializer=tf.keras.initializers.Constant(0.1), name=name,
                                          kv_creator=kv_creator)
    pooled = tf.keras.layers.GlobalAveragePooling1D()(embedding(ids))
    score = tf.keras.layers.Dense(1, kernel_initializer="ones")(pooled)
    return tf.keras.Model(ids, score)


OPTIMIZERS = {
    "CounterSGD": lambda: tf_freqsgd.CounterSGD(0.5, counter_halflife=3.0, momentum=0.5),
    "RowwiseAdagradCounter": lambda: tf_freqsgd.RowwiseAdagradCounter(0.5, counter_halflife=3.0),
}


def compiled(model, optimizer):
    model.compile(optimizer, "mse", run_eagerly=True)
    return model


def train(model, first, last):
    for step in range(first, last):
        rows = slice(BATCH * (step % 4), BATCH * (step % 4 + 1))
        model.train_on_batch(FEATURES[rows], LABELS[rows])


def embedding_of(model):
    return next(layer for layer in model.layers if isinstance(layer, de.keras.layers.Embedding))


def exported(table):
    keys, values = table.export()
    order = np.argsort(keys.numpy())
    return keys.numpy()[order], values.numpy()[order]


def snapshot(model):
    """Every piece of training state: the embedding table, every optimizer table (ours: counter,
    last-seen steps, accumulator; TFRA's: momentum), dense weights and optimizer variables."""
    embedding, optimizer = embedding_of(model), model.optimizer
    state = {"embedding": exported(embedding.params), "iterations": int(optimizer.iterations)}
    for slots in [slots for _, slots in optimizer.dynamic_tables.values()]:
        state.update({name: exported(table) for name, table in slots.items() if is_table(table)})
    state.update({f"tfra/{slot.name}": exported(slot) for slot in embedding.shadow._optimizer_vars.value})
    state["dense"] = [weight.numpy() for weight in model.layers[-1].weights]
    state["optimizer_variables"] = [variable.numpy() for variable in optimizer.variables()]
    return state


def assert_same_state(actual, expected):
    """Bit for bit: a restore is exact, and so is training resumed after one."""
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        for got, want in zip(*(v if isinstance(v, (tuple, list)) else [v] for v in (actual[key], value))):
            np.testing.assert_array_equal(got, want, err_msg=key)


@pytest.fixture(scope="module", params=list(OPTIMIZERS))
def trained(request, tmp_path_factory):
    """A model trained N steps and saved (checkpoint, SavedModel), then N more: the state at the
    save and the state of uninterrupted training."""
    name, directory = unique_name(), tmp_path_factory.mktemp(request.param)
    model = compiled(build_model(name), OPTIMIZERS[request.param]())
    train(model, 0, STEPS)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(directory / "ckpt"))
    saved_model = str(directory / "saved_model")
    if request.param == "CounterSGD":  # the SavedModel tests use one optimizer: saving traces the model
        model.save(saved_model, options=tf.saved_model.SaveOptions(namespace_whitelist=["TFRA"]))
    at_save, predictions = snapshot(model), model.predict(FEATURES, verbose=0)
    assert "counter" in at_save.keys() and at_save["counter"][0].size == len(IDS)
    train(model, STEPS, 2 * STEPS)
    return {"name": name, "optimizer": request.param, "checkpoint": checkpoint, "saved_model": saved_model,
            "at_save": at_save, "predictions": predictions, "uninterrupted": snapshot(model)}


def fresh(trained):
    release(trained["name"])
    return compiled(build_model(trained["name"]), OPTIMIZERS[trained["optimizer"]]())


def test_checkpoint_saves_the_state_table_of_the_optimizer(trained):
    """One table of a row's states: the counter alone (CounterSGD), or the counter and the accumulator."""
    names = dict(tf.train.list_variables(trained["checkpoint"]))
    table, width = ("counter-accumulator", 2) if trained["optimizer"] == "RowwiseAdagradCounter" else ("counter", 1)
    key = f"optimizer/{trained['name']}-parameter-{table}/tables_of_{trained['name']}-parameter-{table}/0/"
    assert names[key + ".ATTRIBUTES/table-values"][-1] == width


@pytest.mark.parametrize("build_first", [False, True], ids=["restore_then_build", "build_then_restore"])
def test_checkpoint_restores_every_table_exactly_and_training_resumes(trained, build_first):
    model = fresh(trained)
    if build_first:
        model.optimizer.build(model.trainable_variables)
    status = tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(trained["checkpoint"])
    # TFRA's shadow variables (the batch's rows, empty between steps) are never matched.
    status.expect_partial()
    if not build_first:  # the optimizer's tables are made, and restored, when it is built
        model.optimizer.build(model.trainable_variables)
    assert_same_state(snapshot(model), trained["at_save"])
    train(model, STEPS, 2 * STEPS)
    assert_same_state(snapshot(model), trained["uninterrupted"])


@pytest.mark.parametrize("trained", ["CounterSGD"], indirect=True)  # the one with a SavedModel
def test_keras_load_model_alone_revives_an_inference_only_model(trained):
    release(trained["name"])
    loaded = tf.keras.models.load_model(trained["saved_model"])
    # Predicts as the saved model did, from the restored table ...
    np.testing.assert_allclose(loaded.predict(FEATURES, verbose=0), trained["predictions"], rtol=1e-6)
    # ... but the layer is revived from its traces (TFRA's config cannot be read back): no
    # de.Variable, nothing an optimizer could train; the optimizer is unbuilt, its state unread.
    layer = loaded.layers[1]
    assert not isinstance(layer, de.keras.layers.Embedding) and not isinstance(layer.params, de.Variable)
    assert int(loaded.optimizer.iterations) == 0


@pytest.mark.parametrize("trained", ["CounterSGD"], indirect=True)  # the one with a SavedModel
def test_saving_load_model_restores_a_trainable_model_and_its_optimizer(trained):
    release(trained["name"])
    model = saving.load_model(trained["saved_model"])
    assert isinstance(embedding_of(model).params, de.Variable)
    assert isinstance(model.optimizer, tf_freqsgd.CounterSGD) and model.optimizer.counter_spec.halflife == 3.0
    assert_same_state(snapshot(model), trained["at_save"])
    model.compile(model.optimizer, "mse", run_eagerly=True)  # the same optimizer, state kept
    train(model, STEPS, 2 * STEPS)
    assert_same_state(snapshot(model), trained["uninterrupted"])
    # Loaded beside a live layer of the same name, the layer would share (and overwrite) its table.
    with pytest.warns(UserWarning, match=f"table '{trained['name']}-parameter' already exists in this process"):
        saving.load_model(trained["saved_model"], compile=False)


def test_saving_load_model_refuses_the_keras_format_and_file_system_tables_without_creator(tmp_path):
    with pytest.raises(ValueError, match="save no TFRA table"):
        saving.load_model(tmp_path / "model.keras")
    (tmp_path / "variables" / "TFRADynamicEmbedding").mkdir(parents=True)
    with pytest.raises(ValueError, match="pass the model's kv_creator"):
        saving.load_model(tmp_path)


def test_restore_into_layers_of_other_names_is_refused_by_check_checkpoint(trained):
    model = compiled(build_model(unique_name()), OPTIMIZERS[trained["optimizer"]]())
    # tf.train.Checkpoint restores none of their tables, silently: TFRA matches tables by name.
    tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(trained["checkpoint"]).expect_partial()
    assert int(embedding_of(model).params.size()) == 0
    with pytest.raises(ValueError, match=f"TFRA tables .*'{trained['name']}-parameter'.* match no table"):
        saving.check_checkpoint(trained["checkpoint"], model)
    saving.check_checkpoint(trained["checkpoint"], fresh(trained))  # the same names: fine


def file_system_creator():
    return de.CuckooHashTableCreator(saver=de.FileSystemSaver())


def test_tfra_file_system_saver_keeps_the_counter_tables_in_its_files(tmp_path):
    """TFRA's FileSystemSaver (set on the layer's kv_creator, which the width-1 tables inherit)
    writes every table to TFRADynamicEmbedding/ files, through tf.train.Checkpoint, TFRA's
    de_save_model and model.save alike; each restores exactly."""
    name = unique_name()

    def rebuilt():
        release(name)
        return compiled(build_model(name, file_system_creator()), OPTIMIZERS["RowwiseAdagradCounter"]())

    model = compiled(build_model(name, file_system_creator()), OPTIMIZERS["RowwiseAdagradCounter"]())
    train(model, 0, STEPS)
    at_save = snapshot(model)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(tmp_path / "ckpt" / "ckpt"))
    de.keras.models.de_save_model(model, str(tmp_path / "de_saved"), save_traces=False)
    model.save(str(tmp_path / "saved"), save_traces=False)
    train(model, STEPS, 2 * STEPS)
    uninterrupted = snapshot(model)

    tables = {f"{name}-parameter{table}" for table in ("", "-counter-accumulator")}
    for files in (tmp_path / "ckpt", tmp_path / "de_saved" / "variables", tmp_path / "saved" / "variables"):
        assert {path.split("_mht_")[0] for path in os.listdir(files / "TFRADynamicEmbedding")} == tables

    restored = rebuilt()
    tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).restore(checkpoint).expect_partial()
    restored.optimizer.build(restored.trainable_variables)
    assert_same_state(snapshot(restored), at_save)

    # de_save_model writes with TensorFlow's bundled Keras: tf_keras cannot load it as a model;
    # the model is rebuilt in code and its weights and optimizer state loaded.
    with pytest.raises(ValueError, match="holds no tf_keras model"):
        saving.load_model(tmp_path / "de_saved", kv_creator=file_system_creator())
    restored = rebuilt()
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(str(tmp_path / "de_saved" / "variables" / "variables")).expect_partial()
    assert_same_state(snapshot(restored), at_save)

    release(name)
    loaded = saving.load_model(tmp_path / "saved", kv_creator=file_system_creator())
    assert_same_state(snapshot(loaded), at_save)
    loaded.compile(loaded.optimizer, "mse", run_eagerly=True)
    train(loaded, STEPS, 2 * STEPS)
    assert_same_state(snapshot(loaded), uninterrupted)


def test_tfra_horovod_checkpoint_callback_needs_horovod(tmp_path):
    try:
        import horovod.tensorflow  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("Horovod is installed")
    model = compiled(build_model(unique_name()), tf_freqsgd.CounterSGD(0.5))
    callback = de.keras.callbacks.DEHvdModelCheckpoint(str(tmp_path / "model"), save_freq=1)
    # Without Horovod, TFRA's callback fails on its first save: `hvd` is None.
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'rank'"):
        model.fit(FEATURES[:BATCH], LABELS[:BATCH], batch_size=BATCH, verbose=0, callbacks=[callback])


LEGACY_CHECKPOINT = os.path.join(os.path.dirname(__file__), "data", "legacy_state_layout", "ckpt")


def legacy_layout_model():
    """The model of ``data/legacy_state_layout``: a checkpoint written by tf_freqsgd at commit 41f3dd5,
    RowwiseAdagradCounter's counter and accumulator in a width-1 table each (made by make_checkpoint.py there)."""
    release("legacy_layout")
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    embedding = de.keras.layers.Embedding(4, initializer=tf.keras.initializers.Constant(0.1), name="legacy_layout")
    pooled = tf.keras.layers.GlobalAveragePooling1D()(embedding(ids))
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1, kernel_initializer="ones")(pooled))
    return compiled(model, tf_freqsgd.RowwiseAdagradCounter(0.5))


def test_a_checkpoint_of_the_former_state_layout_fails_before_the_optimizer_state_is_written():
    model = legacy_layout_model()
    model.optimizer.build(model.trainable_variables)
    before = snapshot(model)
    with pytest.raises(saving.LegacyStateLayoutError, match="legacy_layout-parameter-counter-accumulator"):
        saving.check_checkpoint(LEGACY_CHECKPOINT, model)
    with pytest.raises(saving.LegacyStateLayoutError, match="written by tf_freqsgd 0.2 or earlier"):
        tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(LEGACY_CHECKPOINT)
    assert_same_state(snapshot(model), before)


def test_a_checkpoint_of_the_former_state_layout_restored_before_the_build_fails_at_the_build():
    model = legacy_layout_model()
    tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(LEGACY_CHECKPOINT)
    with pytest.raises(saving.LegacyStateLayoutError, match="'legacy_layout-parameter-counter-accumulator'"):
        model.optimizer.build(model.trainable_variables)
