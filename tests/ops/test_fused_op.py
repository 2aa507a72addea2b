"""The fused sparse-apply ops: errors, determinism, dtypes, and parity with the pure-TF path."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from tf_freqsgd import ops
from tf_freqsgd.data import ctr_view, make_interactions, train_val_test_split
from tf_freqsgd.models import train_ctr_model

pytestmark = pytest.mark.skipif(not ops.custom_op_available(), reason="the fused op is not built")

ROWS, DIM = 50, 4


def fused():
    return ops.loader._load()[0]


def table_and_state(halflife=0.0, dtype=tf.float32):
    rng = np.random.default_rng(0)
    var = tf.Variable(tf.cast(rng.normal(size=(ROWS, DIM)), dtype))
    counter = tf.Variable(tf.fill([ROWS], tf.constant(-np.inf, tf.float64)) if halflife else tf.zeros([ROWS], tf.int32))
    return var, counter


def apply(var, counter, ids, grad, step=1, **attrs):
    fused().resource_sparse_apply_counter_sgd(
        var.handle, counter.handle, 0.1, step, grad, ids,
        halflife=attrs.pop("halflife", 1.0 if counter.dtype == tf.float64 else 0.0), **attrs)


@pytest.mark.parametrize(
    "ids,grad,message",
    [
        (np.array([1, 50]), np.ones((2, DIM), np.float32), r"indices\[1\] = 50 is out of range: the table has 50 rows"),
        (np.array([-3, 1]), np.ones((2, DIM), np.float32), r"indices\[0\] = -3 is out of range"),
        (np.array([1, 2, 3]), np.ones((2, DIM), np.float32), "grad must have shape"),
        (np.array([1, 2]), np.ones((2, DIM + 1), np.float32), "grad dimension 1 is 5; var's is 4"),
    ],
)
def test_bad_inputs_are_rejected_before_any_write(ids, grad, message):
    var, counter = table_and_state()
    before = var.numpy()
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=message):
        apply(var, counter, ids, grad)
    np.testing.assert_array_equal(var.numpy(), before)
    np.testing.assert_array_equal(counter.numpy(), 0)


def test_row_state_must_match_the_table():
    var, _ = table_and_state()
    short_counter = tf.Variable(tf.zeros([ROWS - 1], tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"counter must have shape \[50\]"):
        apply(var, short_counter, np.array([1]), np.ones((1, DIM), np.float32))


def test_a_half_life_needs_float64_log_counts():
    var, counter = table_and_state()
    with pytest.raises(tf.errors.InvalidArgumentError, match="counter must be double; got int32"):
        apply(var, counter, np.array([1]), np.ones((1, DIM), np.float32), halflife=5.0)


def test_gradient_dtype_must_match():
    var, counter = table_and_state()
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)):
        apply(var, counter, np.array([1]), np.ones((1, DIM), np.float64))


def test_same_inputs_same_bits_with_many_duplicates():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, ROWS, 20_000)
    grad = rng.normal(size=(20_000, DIM)).astype(np.float32)
    results = []
    for _ in range(3):
        var, counter = table_and_state(halflife=3.0)
        apply(var, counter, ids, grad, weight_decay=0.01)
        results.append((var.numpy(), counter.numpy()))
    for var_values, counts in results[1:]:
        np.testing.assert_array_equal(var_values, results[0][0])
        np.testing.assert_array_equal(counts, results[0][1])
    # Log-counts at step 1: ln(c) + ln(2) / h, h = 1.
    np.testing.assert_allclose(np.exp(results[0][1] - np.log(2)), np.bincount(ids, minlength=ROWS),
                               rtol=1e-13)


PARITY_CASES = {
    "counter_sgd": lambda: tf_freqsgd.CounterSGD(0.1),
    "presence_count_estimate": lambda: tf_freqsgd.CounterSGD(0.1, counting="presence", estimate="count"),
    "decay_warmup_clamps": lambda: tf_freqsgd.CounterSGD(
        0.1, counter_halflife=3.0, warmup_steps=2, min_scale=0.5, max_scale=0.9, tail_id_threshold=1.0),
    "weight_decay": lambda: tf_freqsgd.CounterSGD(0.1, weight_decay=0.05, counter_halflife=50.0),
    "rowwise": lambda: tf_freqsgd.RowwiseAdagradCounter(0.1),
    "rowwise_l2": lambda: tf_freqsgd.RowwiseAdagradCounter(
        0.1, weight_decay=0.05, weight_decay_mode="l2", counter_halflife=4.0, counting="presence"),
}


def run_path(path, make_optimizer, monkeypatch, mode, dtype=tf.float32, id_dtype=np.int64):
    monkeypatch.setenv(ops.PATH_ENV, path)
    rng = np.random.default_rng(2)
    var = tf.Variable(tf.cast(rng.normal(size=(ROWS, DIM)), dtype), name="table")
    optimizer = make_optimizer()

    def step(ids, values):
        optimizer.apply_gradients([(tf.IndexedSlices(values, ids, tf.constant([ROWS, DIM])), var)])

    if mode == "function":
        step = tf.function(step)
    for _ in range(6):
        ids = rng.integers(0, ROWS, 40).astype(id_dtype)
        step(tf.constant(ids), tf.cast(rng.normal(size=(40, DIM)), dtype))
    return tf.cast(var, tf.float32).numpy(), optimizer.counts(var).numpy()


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("case", PARITY_CASES)
def test_fused_and_pure_tf_paths_agree(case, mode, monkeypatch):
    fused_var, fused_state = run_path("custom", PARITY_CASES[case], monkeypatch, mode)
    tf_var, tf_state = run_path("tf", PARITY_CASES[case], monkeypatch, mode)
    np.testing.assert_allclose(fused_var, tf_var, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fused_state, tf_state, rtol=1e-6, atol=1e-7)


def test_paths_are_bit_identical_without_pow():
    # power 0 and no decay: the same sums, products and differences in the same order.
    def make():
        return tf_freqsgd.CounterSGD(0.1, power=0.0)

    with pytest.MonkeyPatch.context() as monkeypatch:
        fused_var, _ = run_path("custom", make, monkeypatch, "function")
        tf_var, _ = run_path("tf", make, monkeypatch, "function")
    np.testing.assert_array_equal(fused_var, tf_var)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_half_precision_tables_and_both_id_types(dtype, id_dtype, monkeypatch):
    fused_var, _ = run_path("custom", PARITY_CASES["counter_sgd"], monkeypatch, "function", dtype, id_dtype)
    tf_var, _ = run_path("tf", PARITY_CASES["counter_sgd"], monkeypatch, "function", dtype, id_dtype)
    tolerance = 1e-2 if dtype == tf.bfloat16 else 2e-3
    np.testing.assert_allclose(fused_var, tf_var, rtol=tolerance, atol=tolerance)


@pytest.fixture(scope="module")
def small_ctr():
    train, validation, _ = train_val_test_split(ctr_view(make_interactions(num_ratings=4000, seed=1)), seed=1)
    return train, validation


@pytest.mark.parametrize("make", [PARITY_CASES["weight_decay"], PARITY_CASES["rowwise"]])
def test_model_fit_agrees_on_both_paths(make, small_ctr, monkeypatch):
    train, validation = small_ctr
    weights = {}
    for path in ("custom", "tf"):
        monkeypatch.setenv(ops.PATH_ENV, path)
        tf.keras.utils.set_random_seed(0)
        curves, model, _ = train_ctr_model(make, train, {"validation": validation}, epochs=2, batch_size=64,
                                           dim=8, num_users=943, num_items=1682)
        weights[path] = [w.numpy() for w in model.weights]
    for fused_weights, tf_weights in zip(weights["custom"], weights["tf"]):
        np.testing.assert_allclose(fused_weights, tf_weights, rtol=1e-6, atol=1e-7)


def test_jit_compiled_model_trains_on_the_pure_tf_path(small_ctr, monkeypatch):
    monkeypatch.setenv(ops.PATH_ENV, "custom")
    train, _ = small_ctr
    model = tf_freqsgd.models.matrix_factorization(943, 1682, dim=8)
    model.compile(optimizer=tf_freqsgd.CounterSGD(1.0), jit_compile=True,
                  loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    history = model.fit({k: train[k] for k in ("user_id", "item_id")}, train["label"], batch_size=64,
                        epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][1] < history.history["loss"][0]
    assert model.optimizer.counts(model.get_layer("user").embeddings).numpy().sum() == 2 * len(train["label"])
