"""Bad hyper-parameters and bad gradients get clear errors and never corrupt state."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from optimizer_cases import ROWS, initial_weights, sparse_gradient

INVALID_ARGUMENTS = [
    ("CounterSGD", {"learning_rate": -0.1}, "learning_rate"),
    ("CounterSGD", {"learning_rate": float("nan")}, "learning_rate"),
    ("CounterSGD", {"power": -0.5}, "power"),
    ("CounterSGD", {"counter_halflife": -1.0}, "counter_halflife"),
    ("CounterSGD", {"counter_halflife": 0.0}, "counter_halflife"),
    ("CounterSGD", {"estimate": "median"}, "estimate"),
    ("CounterSGD", {"counting": "sometimes"}, "counting"),
    ("CounterSGD", {"weight_decay_mode": "l1"}, "weight_decay_mode"),
    ("CounterSGD", {"weight_decay": -1.0}, "weight_decay"),
    ("CounterSGD", {"min_scale": -1.0}, "min_scale"),
    ("CounterSGD", {"max_scale": 0.0}, "max_scale"),
    ("CounterSGD", {"min_scale": 2.0, "max_scale": 1.0}, "max_scale"),
    ("CounterSGD", {"warmup_steps": -3}, "warmup_steps"),
    ("CounterSGD", {"warmup_steps": 1.5}, "warmup_steps"),
    ("CounterSGD", {"tail_id_threshold": -1.0}, "tail_id_threshold"),
    ("CounterSGD", {"momentum": 1.5}, "momentum"),
    ("CounterSGD", {"cowclip_ratio": 0.0}, "cowclip_ratio"),
    ("CounterSGD", {"cowclip_ratio": "large"}, "cowclip_ratio"),
    ("RowwiseAdagradCounter", {"cowclip_min_norm": -1.0}, "cowclip_min_norm"),
    ("RowwiseAdagradCounter", {"epsilon": -1e-7}, "epsilon"),
    ("RowwiseAdagradCounter", {"initial_accumulator_value": -0.1}, "initial_accumulator_value"),
    ("RowwiseAdagradCounter", {"power": -1.0}, "power"),
    ("RowwiseAdagradCounter", {"counting": "x"}, "counting"),
    ("FrequencySGD", {"frequencies": [0.5, 0.5]}, "frequencies"),
    ("FrequencySGD", {"frequencies": {}, "estimate": "mean"}, "estimate"),
]


@pytest.mark.parametrize("class_name,options,argument", INVALID_ARGUMENTS)
def test_invalid_hyper_parameters_name_the_argument(class_name, options, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        getattr(tf_freqsgd, class_name)(**options)


@pytest.mark.parametrize(
    "table,message",
    [
        (np.ones(ROWS - 1), r"shape \(11,\); expected \(12,\)"),
        (np.r_[np.ones(ROWS - 1), 0.0], "row 11 is 0.0"),
        (np.r_[np.nan, np.ones(ROWS - 1)], "row 0 is nan"),
    ],
)
def test_frequency_tables_are_checked(table, message):
    optimizer = tf_freqsgd.FrequencySGD({"table": table})
    with pytest.raises(ValueError, match=f"variable 'table'.*{message}"):
        optimizer.build([tf.Variable(initial_weights(), name="table")])


def test_frequencies_for_unknown_variables_are_reported():
    optimizer = tf_freqsgd.FrequencySGD({"tabel": np.ones(ROWS)})
    with pytest.raises(ValueError, match=r"not being trained: \['tabel'\].*'table'"):
        optimizer.build([tf.Variable(initial_weights(), name="table")])


def snapshot(optimizer, variables):
    return [v.numpy().copy() for v in list(variables) + list(optimizer.variables)]


def assert_unchanged(before, optimizer, variables):
    for old, new in zip(before, snapshot(optimizer, variables)):
        np.testing.assert_array_equal(new, old)


BAD_GRADIENTS = {
    "nan_row": (lambda: sparse_gradient(np.array([1, 2]), np.array([[np.nan] * 3, [1.0] * 3], np.float32)),
                "non-finite"),
    "inf_row": (lambda: sparse_gradient(np.array([1, 2]), np.array([[np.inf] * 3, [1.0] * 3], np.float32)),
                "non-finite"),
    "negative_id": (lambda: sparse_gradient(np.array([1, -1]), np.ones((2, 3), np.float32)),
                    r"outside \[0, 12\)"),
    "id_too_large": (lambda: sparse_gradient(np.array([12, 1]), np.ones((2, 3), np.float32)),
                     r"outside \[0, 12\)"),
    "dense_nan": (lambda: tf.constant(np.full((ROWS, 3), np.nan, np.float32)), "non-finite"),
}


@pytest.mark.parametrize("class_name", ["CounterSGD", "RowwiseAdagradCounter"])
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("case", BAD_GRADIENTS, ids=list(BAD_GRADIENTS))
def test_bad_gradients_raise_and_leave_every_variable_untouched(class_name, mode, case):
    make_gradient, message = BAD_GRADIENTS[case]
    optimizer = getattr(tf_freqsgd, class_name)(0.1, counter_halflife=4.0)
    first = tf.Variable(initial_weights(), name="first")
    table = tf.Variable(initial_weights(seed=2), name="table")
    good = sparse_gradient(np.array([0, 3, 3]), np.ones((3, 3), np.float32))
    optimizer.apply_gradients([(good, first), (good, table)])
    before = snapshot(optimizer, [first, table])

    def apply():
        # The good gradient comes first: it must not be applied either.
        optimizer.apply_gradients([(good, first), (make_gradient(), table)])

    if mode == "function":
        apply = tf.function(apply)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message) as error:
        apply()
    assert "table" in str(error.value)
    assert_unchanged(before, optimizer, [first, table])


def test_gradient_dtype_must_match_the_variable():
    optimizer = tf_freqsgd.CounterSGD()
    table = tf.Variable(initial_weights(), name="table")
    gradient = tf.IndexedSlices(tf.ones([2, 3], tf.float64), tf.constant([0, 1]), tf.constant([ROWS, 3]))
    with pytest.raises(TypeError, match="'table:0' has dtype float64; expected float32"):
        optimizer.apply_gradients([(gradient, table)])


def test_ids_must_be_integers():
    optimizer = tf_freqsgd.CounterSGD()
    table = tf.Variable(initial_weights(), name="table")
    gradient = tf.IndexedSlices(tf.ones([2, 3]), tf.constant([0.0, 1.0]), tf.constant([ROWS, 3]))
    with pytest.raises(TypeError, match="ids of dtype float32; expected int32 or int64"):
        optimizer.apply_gradients([(gradient, table)])


def test_counters_never_hold_nan_after_a_rejected_step():
    optimizer = tf_freqsgd.CounterSGD(0.1)
    table = tf.Variable(initial_weights(), name="table")
    with pytest.raises(tf.errors.InvalidArgumentError):
        optimizer.apply_gradients(
            [(sparse_gradient(np.array([4]), np.array([[np.nan, 0, 0]], np.float32)), table)]
        )
    optimizer.apply_gradients([(sparse_gradient(np.array([4]), np.ones((1, 3), np.float32)), table)])
    assert np.isfinite(optimizer.counts(table).numpy()).all()
    assert optimizer.counts(table).numpy()[4] == 1.0
