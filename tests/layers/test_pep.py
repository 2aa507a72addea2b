"""PEPEmbedding, PEPSparsityCallback and MaskedEmbedding: the threshold against NumPy at every
granularity, gradients reaching s (sparse where s is per row; scaled by threshold_scale), the mask
callback, the retrain that keeps pruned entries at zero, saving, the pruned export (dense or sparse,
the smaller), bad input."""

import os

import numpy as np
import pytest

import tf_freqsgd
import tensorflow as tf

from tf_freqsgd.export import export_for_serving
from tf_freqsgd.layers import (GRANULARITIES, MaskedEmbedding, PEPEmbedding, PEPSparsityCallback,
                               SparseTableEmbedding, initial_embeddings_path, mask_path)

ROWS, WIDTH = 10, 4
FIELD_SIZES = [3, 5, 2]  # rows 0-2, 3-7, 8-9
FIELD_OF_ROW = np.repeat(np.arange(3), FIELD_SIZES)
IDS = np.array([[0, 3, 3], [7, 1, 0], [9, 9, 2]], np.int64)


def pep_layer(granularity, threshold_init=-3.0, **kwargs):
    if granularity in ("field", "field_dim"):
        kwargs["field_sizes"] = FIELD_SIZES
    return PEPEmbedding(ROWS, WIDTH, granularity, threshold_init=threshold_init, **kwargs)


def randomised(layer, seed=0):
    """Builds ``layer`` and gives V and s spread values, so that some entries are pruned."""
    rng = np.random.default_rng(seed)
    layer.build((None,))
    layer.embeddings.assign(rng.uniform(-0.2, 0.2, layer.embeddings.shape).astype(np.float32))
    layer.threshold.assign(rng.uniform(-4.0, -1.0, layer.threshold.shape).astype(np.float32))
    return layer


def full_threshold_numpy(layer):
    """sigmoid(s) broadcast to the table's shape, by granularity."""
    s = 1.0 / (1.0 + np.exp(-layer.thresholds().astype(np.float64)))
    if layer.granularity in ("field", "field_dim"):
        s = s[FIELD_OF_ROW]
    return np.broadcast_to(s, (ROWS, WIDTH))


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_threshold_matches_numpy(granularity):
    layer = randomised(pep_layer(granularity))
    v = layer.embeddings.numpy().astype(np.float64)
    expected_table = np.sign(v) * np.maximum(np.abs(v) - full_threshold_numpy(layer), 0.0)
    assert 0 < np.count_nonzero(expected_table) < expected_table.size
    np.testing.assert_allclose(layer(IDS), expected_table[IDS], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.pruned_table(), expected_table, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(layer.mask(), expected_table != 0)
    assert layer.inference_parameter_count() == np.count_nonzero(expected_table)


@pytest.mark.parametrize("granularity, shape", [
    ("global", ()), ("dimension", (WIDTH,)), ("feature", (ROWS, 1)), ("feature_dim", (ROWS, WIDTH)),
    ("field", (3, 1)), ("field_dim", (3, WIDTH)),
])
def test_gradients_reach_the_thresholds(granularity, shape):
    layer = randomised(pep_layer(granularity))
    assert tuple(layer.threshold.shape) == shape
    weights = np.random.default_rng(1).normal(size=IDS.shape + (WIDTH,)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(IDS) * weights)
    table_gradient, threshold_gradient = tape.gradient(loss, [layer.embeddings, layer.threshold])
    assert isinstance(table_gradient, tf.IndexedSlices)
    per_row = granularity not in ("global", "dimension")
    assert isinstance(threshold_gradient, tf.IndexedSlices) == per_row
    dense = tf.convert_to_tensor(threshold_gradient).numpy()

    # dL/ds = sum over looked-up entries alive of -sign(v) * sigmoid'(s) * weight, gathered to s's shape.
    v = layer.embeddings.numpy()[IDS]
    sigma = full_threshold_numpy(layer)[IDS]
    alive = np.abs(v) > sigma
    per_entry = np.where(alive, -np.sign(v) * sigma * (1 - sigma) * weights, 0.0)
    expected = np.zeros(shape if shape else ())
    for (i, j), row in np.ndenumerate(IDS):
        contribution = per_entry[i, j]
        if granularity == "global":
            expected = expected + contribution.sum()
        elif granularity == "dimension":
            expected += contribution
        elif granularity == "feature":
            expected[row, 0] += contribution.sum()
        elif granularity == "feature_dim":
            expected[row] += contribution
        elif granularity == "field":
            expected[FIELD_OF_ROW[row], 0] += contribution.sum()
        else:
            expected[FIELD_OF_ROW[row]] += contribution
    assert np.count_nonzero(expected) > 0
    np.testing.assert_allclose(dense, expected, rtol=1e-5, atol=1e-7)


def test_a_scaled_threshold_is_the_same_s_with_a_scaled_gradient():
    scale = 25.0
    plain, scaled = randomised(pep_layer("feature_dim")), pep_layer("feature_dim", threshold_scale=scale)
    scaled.build((None,))
    scaled.embeddings.assign(plain.embeddings)
    scaled.threshold.assign(plain.threshold / scale)
    np.testing.assert_allclose(scaled.thresholds(), plain.thresholds(), rtol=1e-6)
    weights = np.random.default_rng(1).normal(size=IDS.shape + (WIDTH,)).astype(np.float32)
    gradients = []
    for layer in (plain, scaled):
        with tf.GradientTape() as tape:
            output = layer(IDS)
            loss = tf.reduce_sum(output * weights)
        gradients.append(tf.convert_to_tensor(tape.gradient(loss, layer.threshold)).numpy())
        np.testing.assert_allclose(output, plain(IDS), rtol=1e-6, atol=1e-7)
    # dL/dθ = c · dL/ds, so a plain SGD step moves s = c·θ by c² times the step on s itself.
    np.testing.assert_allclose(gradients[1], scale * gradients[0], rtol=1e-5, atol=1e-9)
    assert pep_layer("global", threshold_init=-6.0, threshold_scale=4.0).get_config()["threshold_scale"] == 4.0
    built = pep_layer("global", threshold_init=-6.0, threshold_scale=4.0)
    built.build((None,))
    assert built.threshold.numpy() == -1.5 and built.thresholds() == -6.0


@pytest.mark.parametrize("granularity", ["global", "feature_dim"])
def test_counter_sgd_trains_the_layer(granularity):
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    layer = pep_layer(granularity, threshold_init=-6.0, name="pep")
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1)(tf.keras.layers.Flatten()(layer(ids))))
    model.compile(tf_freqsgd.CounterSGD(0.5), "mse")
    before = layer.threshold.numpy().copy()
    history = model.fit(IDS, np.array([[1.0], [-1.0], [0.5]], np.float32), epochs=20, batch_size=3, verbose=0)
    assert history.history["loss"][-1] < 0.2 * history.history["loss"][0]
    assert not np.array_equal(layer.threshold.numpy(), before)


def pruning_model(threshold_init):
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    layer = PEPEmbedding(ROWS, WIDTH, threshold_init=threshold_init, name="items")
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1)(tf.keras.layers.Flatten()(layer(ids))))
    model.compile(tf_freqsgd.CounterSGD(0.2), "mse")
    return model, layer


def test_callback_records_each_epoch_and_saves_the_mask_when_a_target_is_first_reached(tmp_path):
    # sigmoid(-3.2) = 0.039 against U(-0.05, 0.05) entries: about 80 % pruned from the start.
    model, layer = pruning_model(-3.2)
    initial = layer.embeddings.numpy().copy()
    callback = PEPSparsityCallback([0.5, 0.7, 0.999], tmp_path / "masks")
    labels = np.array([[1.0], [-1.0], [0.5]], np.float32)
    history = model.fit(IDS, labels, epochs=3, batch_size=3, verbose=0, callbacks=[callback])

    assert [point["epoch"] for point in callback.history] == [1, 2, 3]
    assert [point["batches"] for point in callback.history] == [1, 2, 3]
    for point, logged in zip(callback.history, history.history["pep_nonzero"]):
        assert point["nonzero"] == logged
        assert point["sparsity"] == pytest.approx(1 - point["nonzero"] / (ROWS * WIDTH))
    assert set(callback.reached) == {0.5, 0.7}  # 0.999 is never reached
    assert callback.reached[0.5] is callback.history[0]
    np.testing.assert_array_equal(np.load(initial_embeddings_path(tmp_path / "masks", "items")), initial)
    saved = np.load(mask_path(tmp_path / "masks", "items", 0.5))
    assert saved.dtype == bool and saved.shape == (ROWS, WIDTH)
    assert np.count_nonzero(saved) == callback.reached[0.5]["nonzero"]
    assert not os.path.exists(mask_path(tmp_path / "masks", "items", 0.999))

    # A second fit continues the count; the initial values are not overwritten.
    model.fit(IDS, labels, epochs=1, batch_size=3, verbose=0, callbacks=[callback])
    assert callback.history[-1]["epoch"] == 4
    np.testing.assert_array_equal(np.load(initial_embeddings_path(tmp_path / "masks", "items")), initial)


def test_a_late_rewind_point_saves_the_tables_after_that_epoch_across_fit_calls(tmp_path):
    model, layer = pruning_model(-3.2)
    callback = PEPSparsityCallback(0.5, tmp_path, rewind_epochs=2)
    labels = np.array([[1.0], [-1.0], [0.5]], np.float32)
    model.fit(IDS, labels, epochs=1, batch_size=3, verbose=0, callbacks=[callback])
    assert not os.path.exists(initial_embeddings_path(tmp_path, "items"))
    with pytest.raises(FileNotFoundError, match="did the training reach the callback's rewind point"):
        MaskedEmbedding.from_saved(tmp_path, "items", 0.5)
    model.fit(IDS, labels, epochs=1, batch_size=3, verbose=0, callbacks=[callback])
    after_two = layer.embeddings.numpy().copy()
    model.fit(IDS, labels, epochs=1, batch_size=3, verbose=0, callbacks=[callback])
    assert np.any(layer.embeddings.numpy() != after_two)
    np.testing.assert_array_equal(np.load(initial_embeddings_path(tmp_path, "items")), after_two)
    ticket = MaskedEmbedding.from_saved(tmp_path, "items", 0.5)
    mask = np.load(mask_path(tmp_path, "items", 0.5))
    np.testing.assert_array_equal(ticket.pruned_table(), np.where(mask, after_two, 0))


def test_callback_measures_every_n_batches_too(tmp_path):
    model, _ = pruning_model(-3.2)
    callback = PEPSparsityCallback(0.5, tmp_path, every_n_batches=2)
    model.fit(IDS, np.zeros((3, 1), np.float32), epochs=2, batch_size=1, verbose=0, callbacks=[callback])
    # Batches 2, 4, 6 and the two epoch ends (after batches 3 and 6); `epoch` counts completed epochs.
    assert [(point["batches"], point["epoch"]) for point in callback.history] == [(2, 0), (3, 1), (4, 1), (6, 1), (6, 2)]
    assert callback.reached[0.5] is callback.history[0]


@pytest.mark.parametrize("optimizer", ["CounterSGD", "Adagrad"])
def test_retrain_keeps_pruned_entries_at_exactly_zero(optimizer, tmp_path):
    rng = np.random.default_rng(3)
    mask = rng.random((ROWS, WIDTH)) < 0.3
    initial = rng.uniform(-0.05, 0.05, (ROWS, WIDTH)).astype(np.float32)
    np.save(mask_path(tmp_path, "items", 0.7), mask)
    np.save(initial_embeddings_path(tmp_path, "items"), initial)
    layer = MaskedEmbedding.from_saved(tmp_path, "items", 0.7)
    assert layer.name == "items" and layer.inference_parameter_count() == np.count_nonzero(mask)
    np.testing.assert_array_equal(layer.embeddings.numpy(), np.where(mask, initial, 0))

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(IDS))
    assert isinstance(tape.gradient(loss, layer.embeddings), tf.IndexedSlices)

    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1)(tf.keras.layers.Flatten()(layer(ids))))
    # CounterSGD with weight decay and momentum: every state path a zero gradient meets.
    make = {"CounterSGD": lambda: tf_freqsgd.CounterSGD(0.5, weight_decay=0.1, momentum=0.9),
            "Adagrad": lambda: tf.keras.optimizers.legacy.Adagrad(0.5)}[optimizer]
    model.compile(make(), "mse")
    history = model.fit(IDS, np.array([[1.0], [-1.0], [0.5]], np.float32), epochs=20, batch_size=3, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]

    table = layer.embeddings.numpy()
    assert np.all(table[~mask] == 0.0)  # exactly zero, not small
    looked_up = np.zeros((ROWS, WIDTH), bool)
    looked_up[np.unique(IDS)] = True
    assert np.all(table[mask & looked_up] != np.where(mask, initial, 0)[mask & looked_up])
    np.testing.assert_array_equal(layer.pruned_table(), table)
    np.testing.assert_array_equal(layer.pruned_embedding()(IDS), layer(IDS))


def test_a_full_mask_trains_exactly_as_a_plain_embedding():
    initial = np.random.default_rng(4).uniform(-0.05, 0.05, (ROWS, WIDTH)).astype(np.float32)
    labels = np.array([[1.0], [-1.0], [0.5]], np.float32)
    tables = []
    for layer in (MaskedEmbedding.from_mask(np.ones((ROWS, WIDTH), bool), initial),
                  tf.keras.layers.Embedding(ROWS, WIDTH, embeddings_initializer=tf.keras.initializers.Constant(initial))):
        ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
        dense = tf.keras.layers.Dense(1, kernel_initializer="ones")
        model = tf.keras.Model(ids, dense(tf.keras.layers.Flatten()(layer(ids))))
        model.compile(tf_freqsgd.CounterSGD(0.5), "mse")
        model.fit(IDS, labels, epochs=5, batch_size=3, verbose=0, shuffle=False)
        tables.append(layer.embeddings.numpy())
    np.testing.assert_allclose(tables[0], tables[1], rtol=1e-6, atol=1e-7)


def test_a_mask_without_initial_values_draws_them_from_the_initializer():
    mask = np.random.default_rng(5).random((ROWS, WIDTH)) < 0.5
    masked = MaskedEmbedding.from_mask(mask, embeddings_initializer=tf.keras.initializers.Constant(0.25))
    np.testing.assert_array_equal(masked.pruned_table(), np.where(mask, 0.25, 0.0).astype(np.float32))


def test_config_and_keras_save_round_trip(tmp_path):
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    pep = randomised(PEPEmbedding(ROWS, WIDTH, "field_dim", threshold_init=-7.5, field_sizes=FIELD_SIZES,
                                  name="pep"))
    rng = np.random.default_rng(2)
    masked = MaskedEmbedding.from_mask(rng.random((ROWS, WIDTH)) < 0.5, rng.normal(size=(ROWS, WIDTH)), name="masked")
    model = tf.keras.Model(ids, tf.keras.layers.Concatenate()([pep(ids), masked(ids)]))
    config = pep.get_config()
    assert {key: config[key] for key in ("granularity", "threshold_init", "field_sizes")} == {
        "granularity": "field_dim", "threshold_init": -7.5, "field_sizes": FIELD_SIZES}
    assert PEPEmbedding.from_config(config).threshold_shape() == (3, WIDTH)
    assert MaskedEmbedding.from_config(masked.get_config()).input_dim == ROWS
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(IDS), model(IDS))
    np.testing.assert_array_equal(loaded.get_layer("masked").mask.numpy(), masked.mask.numpy())
    np.testing.assert_array_equal(loaded.get_layer("pep").threshold.numpy(), pep.threshold.numpy())


def test_serving_export_holds_the_pruned_tables_in_their_smaller_form(tmp_path):
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64, name="ids")
    pep = randomised(PEPEmbedding(ROWS, WIDTH, name="pep"))
    pep.threshold.assign(np.full((ROWS, WIDTH), -30.0, np.float32))  # nothing pruned: served dense
    masked = MaskedEmbedding.from_mask(np.eye(ROWS, WIDTH, dtype=bool), np.ones((ROWS, WIDTH)), name="masked")
    model = tf.keras.Model(ids, tf.keras.layers.Add()([pep(ids), masked(ids)]))
    assert isinstance(pep.serving_layer(), tf.keras.layers.Embedding)
    assert isinstance(masked.serving_layer(), SparseTableEmbedding)  # 4 of 40 entries kept
    export_dir = str(tmp_path / "1")
    export_for_serving(model, export_dir)
    served = tf.saved_model.load(export_dir)
    # The dense table, and the masked one's row offsets, columns and values (the mask is not shipped).
    assert sorted(tuple(v.shape) for v in served.variables) == [(4,), (4,), (ROWS, WIDTH), (ROWS + 1,)]
    assert not any(v.dtype == tf.bool for v in served.variables)
    (scores,) = served.signatures["serving_default"](ids=tf.constant(IDS)).values()
    np.testing.assert_allclose(scores, model(IDS), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kwargs, message", [
    ({"granularity": "row"}, "`granularity` must be one of"),
    ({"granularity": "field"}, "granularity 'field' needs `field_sizes`"),
    ({"granularity": "field_dim", "field_sizes": [3, 3]}, "`field_sizes` sum to 6; they must sum to input_dim = 10"),
    ({"granularity": "field", "field_sizes": [10, 0]}, r"`field_sizes\[i\]` must be a positive integer; got 0"),
    ({"granularity": "feature", "field_sizes": [10]}, "`field_sizes` is used by the granularities"),
    ({"threshold_init": float("nan")}, "`threshold_init` must be a finite number; got nan"),
    ({"threshold_init": "low"}, "`threshold_init` must be a finite number; got 'low'"),
    ({"output_dim": 0}, "`output_dim` must be a positive integer; got 0"),
    ({"threshold_scale": 0.0}, "`threshold_scale` must be a finite number > 0; got 0.0"),
])
def test_bad_pep_arguments_are_named(kwargs, message):
    arguments = {"input_dim": ROWS, "output_dim": WIDTH, **kwargs}
    with pytest.raises(ValueError, match=f"PEPEmbedding: {message}"):
        PEPEmbedding(**arguments)


@pytest.mark.parametrize("target, message", [
    (0.0, "must be a number in \\(0, 1\\); got 0.0"),
    ([0.5, 1.5], "must be a number in \\(0, 1\\); got 1.5"),
    ([], "`target_sparsity` is empty"),
])
def test_bad_targets_are_named(target, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        PEPSparsityCallback(target, tmp_path)


@pytest.mark.parametrize("rewind_epochs", [-1, 1.5, True])
def test_a_bad_rewind_point_is_named(rewind_epochs, tmp_path):
    with pytest.raises(ValueError, match=f"`rewind_epochs` must be an integer >= 0; got {rewind_epochs!r}"):
        PEPSparsityCallback(0.5, tmp_path, rewind_epochs=rewind_epochs)


def test_callback_refuses_a_model_without_pep_layers(tmp_path):
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    model = tf.keras.Model(ids, tf.keras.layers.Embedding(ROWS, WIDTH)(ids))
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="the model has no PEPEmbedding layer"):
        model.fit(IDS, np.zeros((3, 3, WIDTH)), verbose=0, callbacks=[PEPSparsityCallback(0.5, tmp_path)])


def test_bad_masks_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"`mask` \(10, 4\) and `initial_embeddings` \(10, 3\) must be matrices"):
        MaskedEmbedding.from_mask(np.ones((10, 4), bool), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="`mask` must be boolean or hold only 0 and 1"):
        MaskedEmbedding.from_mask(np.full((10, 4), 0.5), np.zeros((10, 4)))
    with pytest.raises(ValueError, match=r"`mask` must be a matrix \(rows, width\); got shape \(10,\)"):
        MaskedEmbedding.from_mask(np.ones(10, bool))
    with pytest.raises(FileNotFoundError, match="items.mask-sparsity-0.9.npy does not exist .was target sparsity"):
        MaskedEmbedding.from_saved(tmp_path, "items", 0.9)
    with pytest.raises(RuntimeError, match="call the layer .* before pruned_table"):
        PEPEmbedding(ROWS, WIDTH).pruned_table()
