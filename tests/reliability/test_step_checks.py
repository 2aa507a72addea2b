"""Every step is all-or-nothing: a bad gradient, a NaN label or a diverging rate raises (or, opted in,
skips the step) before anything is written, on every path: eager, tf.function, model.fit with
Grappler on (the default), XLA, the fused op and the pure-TF path."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd

VOCAB, WIDTH = 30, 4

OPTIMIZERS = {
    "CounterSGD": lambda **kw: tf_freqsgd.CounterSGD(0.05, momentum=0.5, **kw),
    "CounterSGD_halflife": lambda **kw: tf_freqsgd.CounterSGD(0.05, counter_halflife=4.0, **kw),
    "RowwiseAdagradCounter": lambda **kw: tf_freqsgd.RowwiseAdagradCounter(0.05, **kw),
    "FrequencySGD": lambda **kw: tf_freqsgd.FrequencySGD({"items/embeddings": np.linspace(0.1, 1, VOCAB)}, 0.05, **kw),
    # The dense layer by Adam: its step is checked with the table's, before either is written.
    "CounterSGD_adam": lambda **kw: tf_freqsgd.CounterSGD(0.05, dense_optimizer="adam", **kw),
}


def build_model(optimizer, seed=0, **compile_options):
    tf.keras.utils.set_random_seed(seed)
    ids = tf.keras.Input(shape=(2,), dtype=tf.int64)
    rows = tf.keras.layers.Embedding(VOCAB, WIDTH, name="items")(ids)
    score = tf.keras.layers.Dense(1, name="head")(tf.keras.layers.Flatten()(rows))
    model = tf.keras.Model(ids, score)
    model.compile(optimizer=optimizer, loss="mse", **compile_options)
    return model


def batches(n=3, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, VOCAB, (size, 2)), rng.normal(size=(size, 1)).astype(np.float32)) for _ in range(n)]


def state(model):
    """Every model weight and optimizer variable (step counts, counters, slots)."""
    return [v.numpy().copy() for v in model.weights + model.optimizer.variables]


def assert_same(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got, want)


def with_nan_label(batch):
    ids, labels = batch
    labels = labels.copy()
    labels[3] = np.nan
    return ids, labels


def fit(model, data):
    ids = np.concatenate([b[0] for b in data])
    labels = np.concatenate([b[1] for b in data])
    return model.fit(ids, labels, batch_size=len(data[0][0]), epochs=1, shuffle=False, verbose=0)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("run_eagerly", [False, True], ids=["graph", "eager"])
def test_a_nan_label_in_fit_raises_naming_the_variable_and_writes_nothing(name, run_eagerly, sparse_apply_path):
    model = build_model(OPTIMIZERS[name](), run_eagerly=run_eagerly)
    first, second, _ = batches()
    fit(model, [first])
    before = state(model)
    # (graph errors quote the message with escaped quotes)
    named = f"{name.split('_')[0]}: gradient for variable " + r"\\?'(items/embeddings|head/kernel|head/bias):0\\?'"
    with pytest.raises(tf.errors.InvalidArgumentError, match=named + " has a non-finite value"):
        fit(model, [with_nan_label(second)])
    assert_same(state(model), before)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_skip_policy_drops_the_step_and_its_t(name, sparse_apply_path):
    """A skipped step changes nothing, iterations and t included: training over [a, NaN, b] equals
    training over [a, b]."""
    first, second, third = batches()
    skipping = build_model(OPTIMIZERS[name](non_finite="skip"))
    history = fit(skipping, [first, with_nan_label(second), third])
    clean = build_model(OPTIMIZERS[name](non_finite="skip"))
    fit(clean, [first, third])
    assert_same(state(skipping), state(clean))
    assert int(skipping.optimizer.iterations) == int(skipping.optimizer.applied_steps) == 2
    assert np.isnan(history.history["loss"][0])  # Keras' running mean saw the NaN batch


def test_a_diverging_rate_stops_fit_at_its_first_non_finite_gradient(sparse_apply_path):
    """(A step whose gradient is finite but whose result overflows float32 is written: see the
    README's Guarantees.)"""
    model = build_model(tf_freqsgd.CounterSGD(30.0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite"):
        fit(model, batches(n=40))
    assert 1 < int(model.optimizer.iterations) < 40


def test_under_xla_a_non_finite_step_is_skipped(sparse_apply_path):
    """XLA drops assertions: a jit-compiled train step cannot raise, so it skips instead."""
    first, second, third = batches()
    compiled = build_model(OPTIMIZERS["CounterSGD"](), jit_compile=True)
    fit(compiled, [first, with_nan_label(second), third])
    clean = build_model(OPTIMIZERS["CounterSGD"](), jit_compile=True)
    fit(clean, [first, third])
    assert_same(state(compiled), state(clean))


def test_grappler_keeps_the_finite_check(sparse_apply_path):
    """The check multiplies by a zero Grappler cannot fold; the optimized graph still holds it."""
    model = build_model(OPTIMIZERS["CounterSGD"]())
    fit(model, batches(n=1))
    assert tf.config.optimizer.get_experimental_options().get("constant_folding", True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite"):
        fit(model, [with_nan_label(batches(n=1, seed=1)[0])])


def two_tables():
    first = tf.Variable(np.ones((VOCAB, WIDTH), np.float32), name="first")
    second = tf.Variable(np.ones((VOCAB, WIDTH), np.float32), name="second")
    return first, second


def sparse(ids, width=WIDTH, value=1.0):
    ids = np.asarray(ids, np.int64)
    return tf.IndexedSlices(tf.fill([len(ids), width], value), tf.constant(ids), tf.constant([VOCAB, width], tf.int64))


BAD_SECOND_GRADIENTS = {
    "wider_rows": (lambda: sparse([1, 2], WIDTH + 1), ValueError, r"'second:0' has shape \(2, 5\); expected \(None, 4\)"),
    "dense_wrong_shape": (lambda: tf.ones([VOCAB, WIDTH - 1]), ValueError, r"'second:0' has shape \(30, 3\)"),
    "float64": (lambda: tf.IndexedSlices(tf.ones([1, WIDTH], tf.float64), tf.constant([1]), tf.constant([VOCAB, WIDTH])),
                TypeError, "dtype float64; expected float32"),
    "id_out_of_range": (lambda: sparse([1, VOCAB]), tf.errors.InvalidArgumentError, r"id outside \[0, 30\)"),
    "nan": (lambda: sparse([1], value=np.nan), tf.errors.InvalidArgumentError, "non-finite"),
}


@pytest.mark.parametrize("name", ["CounterSGD", "CounterSGD_halflife", "RowwiseAdagradCounter"])
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("case", BAD_SECOND_GRADIENTS)
def test_a_bad_second_gradient_leaves_the_first_table_untouched(name, mode, case, sparse_apply_path):
    make_gradient, error, message = BAD_SECOND_GRADIENTS[case]
    optimizer = OPTIMIZERS[name]()
    first, second = two_tables()
    optimizer.apply_gradients([(sparse([0, 3, 3]), first), (sparse([0]), second)])
    before = [v.numpy().copy() for v in [first, second] + optimizer.variables]

    def apply():
        optimizer.apply_gradients([(sparse([4, 5, 4]), first), (make_gradient(), second)])

    with pytest.raises(error, match=message):
        (tf.function(apply) if mode == "function" else apply)()
    assert_same([v.numpy() for v in [first, second] + optimizer.variables], before)


def test_widths_unknown_when_traced_are_checked_when_run(sparse_apply_path):
    optimizer = tf_freqsgd.CounterSGD(0.1)
    first, second = two_tables()
    optimizer.build([first, second])
    before = [v.numpy().copy() for v in [first, second] + optimizer.variables]

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int64)])
    def apply(values, ids):
        good = tf.IndexedSlices(tf.ones([2, WIDTH]), tf.constant([1, 2], tf.int64))
        optimizer.apply_gradients([(good, first), (tf.IndexedSlices(values, ids), second)])

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"second:0.* has the wrong shape: expected 4"):
        apply(tf.ones([2, WIDTH + 2]), tf.constant([1, 2], tf.int64))
    assert_same([v.numpy() for v in [first, second] + optimizer.variables], before)
    apply(tf.ones([2, WIDTH]), tf.constant([1, 2], tf.int64))  # the right width trains
    assert int(optimizer.iterations) == 1


def test_loss_scale_optimizer_skips_do_not_advance_t(sparse_apply_path):
    """Keras' LossScaleOptimizer advances `iterations` on the steps it skips; the frequency
    estimates' t (applied_steps) does not move, so training matches training without that batch."""
    first, second, third = batches()

    def trained(data):
        model = build_model(tf.keras.mixed_precision.LossScaleOptimizer(tf_freqsgd.CounterSGD(0.05),
                                                                        initial_scale=2.0**8))
        fit(model, data)
        return model

    skipped, clean = trained([first, with_nan_label(second), third]), trained([first, third])
    inner = skipped.optimizer.inner_optimizer
    assert int(inner.iterations) == 3 and int(inner.applied_steps) == 2
    for got, want in zip(skipped.weights, clean.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    table = skipped.get_layer("items").embeddings
    np.testing.assert_array_equal(inner.counts(table).numpy(),
                                  clean.optimizer.inner_optimizer.counts(clean.get_layer("items").embeddings).numpy())
