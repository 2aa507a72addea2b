"""CowClip (``cowclip_ratio``) on the tf_keras counter optimizers: the NumPy reference on raw sparse
gradients with repeated ids (eager, tf.function, model.fit, gradients summed on a worker), rows
under their bound untouched, dense gradients never clipped, the pure-TF path in place of the fused
op, the step checks on the raw gradient, and the config."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from optimizer_cases import COWCLIP_CASES, KIND_OF, cowclip_batches, initial_weights, make_pair, sparse_gradient
from reference import ReferenceOptimizer
from tf_freqsgd import ops
from tf_freqsgd.optimizers import tf_step

CLASSES = ["CounterSGD", "RowwiseAdagradCounter"]
VOCAB, WIDTH = 20, 4  # the model of the fit test


def train(optimizer, mode="eager", gradients=None):
    variable = tf.Variable(initial_weights(), name="table")

    def apply(gradient):
        optimizer.apply_gradients([(gradient, variable)])

    if mode == "function":
        apply = tf.function(apply, reduce_retracing=True)
    for ids, values in gradients or cowclip_batches():
        apply(sparse_gradient(ids, values))
    return variable


def reference_run(reference, gradients=None):
    expected = initial_weights().astype(np.float64)
    for ids, values in gradients or cowclip_batches():
        expected = reference.sparse_step(expected, ids, values)
    return expected


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("class_name,options", COWCLIP_CASES)
def test_counter_optimizers_follow_the_reference(class_name, options, mode):
    optimizer, reference = make_pair(class_name, learning_rate=0.1, **options)
    variable = train(optimizer, mode)
    expected = reference_run(reference)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(optimizer.counts(variable).numpy(), reference.current_counts(), rtol=1e-5)
    unclipped = {key: value for key, value in options.items() if not key.startswith("cowclip")}
    _, without_clip = make_pair(class_name, learning_rate=0.1, **unclipped)
    assert np.abs(reference_run(without_clip) - expected).max() > 1e-3  # the bounds bind


def fit_model():
    """An embedding under a fixed head: the table is the only trained variable."""
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
    pooled = tf.keras.layers.Flatten()(tf.keras.layers.Embedding(VOCAB, WIDTH, name="items")(ids))
    score = tf.keras.layers.Dense(1, kernel_initializer="ones", use_bias=False, trainable=False)(pooled)
    return tf.keras.Model(ids, score)


@pytest.mark.parametrize("class_name", CLASSES)
def test_fit_follows_the_reference(class_name):
    rng = np.random.default_rng(0)
    ids, labels = rng.integers(0, VOCAB, (64, 3)), rng.normal(size=(64, 1)).astype(np.float32)
    options = {"cowclip_ratio": 0.5, "cowclip_min_norm": 0.1}
    model = fit_model()
    model.compile(getattr(tf_freqsgd, class_name)(0.5, **options), "mse")
    model.fit(ids, labels, batch_size=16, shuffle=False, verbose=0)

    # The reference, fed each batch's raw gradient at its own weights.
    probe = fit_model()
    table = probe.get_layer("items").embeddings
    reference = ReferenceOptimizer((VOCAB, WIDTH), kind=KIND_OF[class_name], learning_rate=0.5, **options)
    expected = table.numpy().astype(np.float64)
    for start in range(0, 64, 16):
        table.assign(expected.astype(np.float32))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(probe(ids[start:start + 16]) - labels[start:start + 16]))
        gradient = tape.gradient(loss, table)
        expected = reference.sparse_step(expected, gradient.indices.numpy(), gradient.values.numpy())
    np.testing.assert_allclose(model.get_layer("items").embeddings.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_rows_under_their_bound_are_unchanged(monkeypatch):
    monkeypatch.setenv(ops.PATH_ENV, "tf")  # both optimizers on the same path, for identical bits
    ids = np.array([2, 5, 5, 2, 5])
    values = np.array([[1e-3, 0, 0], [2.0, 1, 0], [1.0, 0, 3], [0, 1e-3, 0], [0, 2, 2]], np.float32)
    ratio, min_norm = 0.2, 0.01
    clipped_table = train(tf_freqsgd.CounterSGD(0.1, power=0.0, cowclip_ratio=ratio, cowclip_min_norm=min_norm),
                          gradients=[(ids, values)]).numpy()
    plain_table = train(tf_freqsgd.CounterSGD(0.1, power=0.0), gradients=[(ids, values)]).numpy()
    start = initial_weights()
    # Row 2: a gradient far under its bound, the update of plain SGD to the bit.
    np.testing.assert_array_equal(clipped_table[2], plain_table[2])
    # Row 5: 3 occurrences, the summed gradient scaled down to the norm 3 * max(r * ||w||, zeta).
    summed = values[[1, 2, 4]].sum(axis=0)
    bound = 3 * max(ratio * np.linalg.norm(start[5]), min_norm)
    assert np.linalg.norm(summed) > bound
    step = (start[5] - clipped_table[5]) / 0.1
    np.testing.assert_allclose(step, summed * bound / np.linalg.norm(summed), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("class_name", CLASSES)
def test_a_bound_that_never_binds_changes_no_bit(class_name, monkeypatch):
    monkeypatch.setenv(ops.PATH_ENV, "tf")
    never = train(getattr(tf_freqsgd, class_name)(0.1, cowclip_ratio=1e6), "function")
    off = train(getattr(tf_freqsgd, class_name)(0.1, cowclip_min_norm=123.0), "function")
    np.testing.assert_array_equal(never.numpy(), off.numpy())


class RecordingOps:
    """Stands in for the fused op: records the calls, updates nothing."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append(name)


@pytest.mark.parametrize("class_name", CLASSES)
def test_the_fused_op_is_left_to_steps_without_cowclip(class_name, monkeypatch):
    fake = RecordingOps()
    monkeypatch.setattr(tf_step, "fused_ops_for", lambda variable: fake)
    optimizer, reference = make_pair(class_name, learning_rate=0.1, cowclip_ratio=1.0)
    np.testing.assert_allclose(train(optimizer).numpy(), reference_run(reference), rtol=2e-5, atol=2e-6)
    assert fake.calls == []
    train(getattr(tf_freqsgd, class_name)(0.1))
    assert len(fake.calls) == len(cowclip_batches())


@pytest.mark.parametrize("class_name", CLASSES)
def test_dense_gradients_are_not_clipped(class_name):
    optimizer, reference = make_pair(class_name, learning_rate=0.1, cowclip_ratio=1e-6, cowclip_min_norm=0.0)
    variable = tf.Variable(initial_weights(), name="dense_kernel")
    gradient = np.random.default_rng(5).normal(size=variable.shape).astype(np.float32)
    optimizer.apply_gradients([(tf.constant(gradient), variable)])
    np.testing.assert_allclose(variable.numpy(), reference.dense_step(initial_weights(), gradient), rtol=1e-6)


@pytest.mark.parametrize("class_name", CLASSES)
def test_gradients_summed_on_a_worker_are_clipped_by_their_occurrences(class_name):
    """ParameterServerStrategy's path: the worker sums the rows and sends the occurrences beside them."""
    optimizer, reference = make_pair(class_name, learning_rate=0.1, cowclip_ratio=1.0)
    variable = tf.Variable(initial_weights(), name="table")
    optimizer.build([variable])
    for ids, values in cowclip_batches():
        summed = optimizer._summed_on_worker(sparse_gradient(ids, values), variable)
        optimizer._checked_apply(tf.distribute.get_strategy(), [(summed, variable)])
    np.testing.assert_allclose(variable.numpy(), reference_run(reference), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("non_finite", ["raise", "skip"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("class_name", CLASSES)
def test_non_finite_gradients_are_seen_before_the_clip(class_name, mode, bad, non_finite):
    optimizer = getattr(tf_freqsgd, class_name)(0.1, cowclip_ratio=0.01, cowclip_min_norm=0.0, non_finite=non_finite)
    variable = tf.Variable(initial_weights(), name="table")
    optimizer.build([variable])
    before = [v.numpy().copy() for v in [variable, *optimizer.variables]]
    # The step's check reads the raw gradient: the clip (a small bound here) never sees the bad row.
    gradient = sparse_gradient(np.array([3, 3, 7]), np.array([[bad, 1, 1], [1, 1, 1], [1, 1, 1]], np.float32))

    def apply():
        optimizer.apply_gradients([(gradient, variable)])

    if mode == "function":
        apply = tf.function(apply)
    if non_finite == "raise":
        with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite"):
            apply()
    else:
        apply()
    for old, new in zip(before, [variable, *optimizer.variables]):
        np.testing.assert_array_equal(new.numpy(), old)
    assert int(optimizer.applied_steps.numpy()) == 0


@pytest.mark.parametrize("options", [{"cowclip_ratio": 0.25, "cowclip_min_norm": 0.5}, {}])
@pytest.mark.parametrize("class_name", CLASSES)
def test_config_round_trip(class_name, options):
    optimizer = getattr(tf_freqsgd, class_name)(0.1, **options)
    config = optimizer.get_config()
    assert (config["cowclip_ratio"], config["cowclip_min_norm"]) == (options.get("cowclip_ratio"),
                                                                      options.get("cowclip_min_norm", 1e-5))
    assert type(optimizer).from_config(config).get_config() == config
    restored = tf.keras.optimizers.deserialize(tf.keras.optimizers.serialize(optimizer))
    assert type(restored) is type(optimizer) and restored.get_config() == config
