"""Everything a tf_keras optimizer supports keeps working with the frequency-aware optimizers."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from optimizer_cases import initial_weights, make_pair, random_batches, sparse_gradient

VOCAB, WIDTH = 20, 4


def build_model(seed=0):
    tf.keras.utils.set_random_seed(seed)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64, name="ids")
    embedded = tf.keras.layers.Embedding(VOCAB, WIDTH, name="embedding")(ids)
    score = tf.keras.layers.Dense(1, name="head")(tf.keras.layers.Flatten()(embedded))
    return tf.keras.Model(ids, score)


def training_data(seed=0, n=64):
    rng = np.random.default_rng(seed)
    ids = np.minimum(rng.zipf(1.5, size=(n, 3)) - 1, VOCAB - 1).astype(np.int64)
    return ids, rng.normal(size=(n, 1)).astype(np.float32)


OPTIMIZERS = {
    "counter_sgd": lambda: tf_freqsgd.CounterSGD(0.05, counter_halflife=5.0, weight_decay=0.01, momentum=0.5),
    "rowwise_adagrad_counter": lambda: tf_freqsgd.RowwiseAdagradCounter(0.05, counting="presence"),
    "frequency_sgd": lambda: tf_freqsgd.FrequencySGD(
        {"embedding/embeddings": np.linspace(0.1, 2.0, VOCAB)}, 0.05, estimate="count"
    ),
}


def counter_of(model):
    return model.optimizer.counts(model.get_layer("embedding").embeddings).numpy()


@pytest.mark.parametrize("name,cls", [("counter_sgd", tf_freqsgd.CounterSGD),
                                      ("rowwise_adagrad_counter", tf_freqsgd.RowwiseAdagradCounter)])
def test_by_name_in_compile(name, cls):
    model = build_model()
    model.compile(optimizer=name, loss="mse")
    assert isinstance(model.optimizer, cls)


def test_fit_counts_every_occurrence_before_deduplication():
    model = build_model()
    model.compile(optimizer=tf_freqsgd.CounterSGD(0.05), loss="mse")
    ids, labels = training_data()
    model.fit(ids, labels, batch_size=len(ids), epochs=1, verbose=0)
    np.testing.assert_array_equal(counter_of(model), np.bincount(ids.ravel(), minlength=VOCAB))


def test_presence_counting_in_fit():
    model = build_model()
    model.compile(optimizer=tf_freqsgd.CounterSGD(0.05, counting="presence"), loss="mse")
    ids, labels = training_data()
    model.fit(ids, labels, batch_size=16, epochs=1, verbose=0, shuffle=False)
    expected = sum(np.isin(np.arange(VOCAB), ids[i:i + 16]).astype(float) for i in range(0, 64, 16))
    np.testing.assert_array_equal(counter_of(model), expected)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_config_round_trip(name):
    optimizer = OPTIMIZERS[name]()
    config = optimizer.get_config()
    restored = type(optimizer).from_config(config)
    assert restored.get_config() == config
    serialized = tf.keras.optimizers.serialize(optimizer)
    assert tf.keras.optimizers.deserialize(serialized).get_config() == config


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("file_name", ["model.keras", "saved_model"])
def test_save_and_load_model_restore_state_and_resume_exactly(tmp_path, name, file_name):
    ids, labels = training_data()
    model = build_model()
    model.compile(optimizer=OPTIMIZERS[name](), loss="mse")
    model.fit(ids, labels, batch_size=16, epochs=2, verbose=0, shuffle=False)
    path = str(tmp_path / file_name)
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    if file_name == "saved_model":
        # tf_keras restores no optimizer state from this format by itself (for any optimizer); the
        # README's recipe: build the optimizer, then read the SavedModel's checkpoint.
        loaded.optimizer.build(loaded.trainable_variables)
        loaded.load_weights(f"{path}/variables/variables")
    assert type(loaded.optimizer) is type(model.optimizer)
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
    model.fit(ids, labels, batch_size=16, epochs=1, verbose=0, shuffle=False)
    loaded.fit(ids, labels, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for uninterrupted, resumed in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(resumed.numpy(), uninterrupted.numpy())


def test_checkpoint_restores_counters(tmp_path):
    ids, labels = training_data()
    model = build_model()
    model.compile(optimizer=OPTIMIZERS["counter_sgd"](), loss="mse")
    model.fit(ids, labels, batch_size=16, epochs=1, verbose=0)
    path = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(str(tmp_path / "ckpt"))

    fresh = build_model(seed=1)
    fresh.compile(optimizer=OPTIMIZERS["counter_sgd"](), loss="mse")
    fresh.optimizer.build(fresh.trainable_variables)
    tf.train.Checkpoint(model=fresh, optimizer=fresh.optimizer).restore(path).assert_consumed()
    for saved, restored in zip(model.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
    assert counter_of(fresh).any()


@pytest.mark.parametrize("clip", [{"clipvalue": 0.3}, {"clipnorm": 0.5}, {"global_clipnorm": 0.5}])
def test_gradient_clipping_applies_to_raw_rows(clip):
    optimizer, reference = make_pair("CounterSGD", learning_rate=0.1, **clip)
    variable = tf.Variable(initial_weights(), name="table")
    expected = variable.numpy()
    for ids, values in random_batches(steps=3):
        optimizer.apply_gradients([(sparse_gradient(ids, values), variable)])
        if "clipvalue" in clip:
            clipped = np.clip(values, -0.3, 0.3)
        else:
            clipped = values * min(1.0, 0.5 / np.linalg.norm(values))
        expected = reference.sparse_step(expected, ids, clipped)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-5, atol=2e-6)


def test_ema_tracks_the_average_of_the_weights():
    optimizer, reference = make_pair("CounterSGD", learning_rate=0.1, use_ema=True, ema_momentum=0.5)
    variable = tf.Variable(initial_weights(), name="table")
    expected = variable.numpy()
    average = expected.copy()
    for ids, values in random_batches(steps=4):
        optimizer.apply_gradients([(sparse_gradient(ids, values), variable)])
        expected = reference.sparse_step(expected, ids, values)
        average = 0.5 * average + 0.5 * expected
    optimizer.finalize_variable_values([variable])
    np.testing.assert_allclose(variable.numpy(), average, rtol=2e-5, atol=2e-6)


def test_loss_scale_optimizer_skips_overflowing_steps_without_touching_counters():
    optimizer = tf.keras.mixed_precision.LossScaleOptimizer(tf_freqsgd.CounterSGD(0.1))
    variable = tf.Variable(initial_weights(), name="table")
    good = sparse_gradient(np.array([1, 2, 1]), np.ones((3, 3), np.float32))
    optimizer.apply_gradients([(good, variable)])
    counts = lambda: optimizer.inner_optimizer.counts(variable).numpy()  # noqa: E731
    before_weights, before_counter = variable.numpy(), counts()
    scale_before = float(optimizer.loss_scale)
    overflow = sparse_gradient(np.array([1, 3]), np.array([[np.inf] * 3, [1.0] * 3], np.float32))
    optimizer.apply_gradients([(overflow, variable)])
    np.testing.assert_array_equal(variable.numpy(), before_weights)
    np.testing.assert_array_equal(counts(), before_counter)
    assert float(optimizer.loss_scale) == scale_before / 2


def test_mixed_precision_fit_trains():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model()
        model.compile(optimizer=tf_freqsgd.CounterSGD(0.05), loss="mse")
        assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
        ids, labels = training_data()
        history = model.fit(ids, labels, batch_size=16, epochs=3, verbose=0)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(history.history["loss"]).all()
    embedding = model.get_layer("embedding").embeddings
    assert model.optimizer.inner_optimizer.counts(embedding).numpy().sum() == 3 * ids.size


def test_eager_and_function_agree():
    results = []
    for run_eagerly in (True, False):
        model = build_model()
        model.compile(optimizer=OPTIMIZERS["counter_sgd"](), loss="mse", run_eagerly=run_eagerly)
        ids, labels = training_data()
        model.fit(ids, labels, batch_size=16, epochs=2, verbose=0, shuffle=False)
        results.append([w.numpy() for w in model.weights])
    for eager, graph in zip(*results):
        np.testing.assert_allclose(eager, graph, rtol=1e-6, atol=1e-7)


def test_embedding_state_is_one_counter_per_row():
    model = build_model()
    model.compile(optimizer=tf_freqsgd.CounterSGD(0.05), loss="mse")
    model.optimizer.build(model.trainable_variables)
    embedding = model.get_layer("embedding").embeddings
    per_table = [v for v in model.optimizer.variables if embedding._shared_name in v.name]
    assert [(v.shape.as_list(), v.dtype) for v in per_table] == [([VOCAB], tf.int32)]
