"""Every hyper-parameter is validated alike from Python numbers, NumPy scalars and 0-d tensors:
bools refused where a number is meant, non-finite values refused, eviction arguments checked when
given."""

import math

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd

SPELLINGS = {
    "python": lambda value: value,
    "numpy": lambda value: np.float32(value) if isinstance(value, float) else np.int64(value),
    "numpy_0d": lambda value: np.array(value),
    "tensor": lambda value: tf.constant(value, tf.float64 if isinstance(value, float) else tf.int64),
    "float32_tensor": lambda value: tf.constant(value, tf.float32 if isinstance(value, float) else tf.int32),
}

BAD = [
    ("CounterSGD", "learning_rate", -0.1),
    ("CounterSGD", "learning_rate", 1e38 * 10),  # beyond float32: inf in the update
    ("RowwiseAdagradCounter", "learning_rate", -1.0),
    ("FrequencySGD", "learning_rate", -0.1),
    ("CounterSGD", "power", -0.5),
    ("CounterSGD", "min_scale", -1.0),
    ("CounterSGD", "max_scale", 0.0),
    ("CounterSGD", "counter_halflife", 0.0),
    ("CounterSGD", "counter_halflife", 2.0**33),
    ("CounterSGD", "admission_count", 0.0),
    ("CounterSGD", "warmup_steps", -3),
    ("CounterSGD", "weight_decay", -1.0),
    ("CounterSGD", "tail_id_threshold", -1.0),
    ("CounterSGD", "momentum", 1.5),
    ("CounterSGD", "cowclip_ratio", 0.0),
    ("RowwiseAdagradCounter", "cowclip_ratio", -1.0),
    ("CounterSGD", "cowclip_min_norm", -1e-5),
    ("RowwiseAdagradCounter", "epsilon", -1e-7),
    ("RowwiseAdagradCounter", "initial_accumulator_value", -0.1),
]


def make(class_name, **options):
    if class_name == "FrequencySGD":
        options.setdefault("frequencies", {})
    return getattr(tf_freqsgd, class_name)(**options)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # np.float32(1e39) is inf
@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("class_name,argument,value", BAD, ids=[f"{c}-{a}-{v}" for c, a, v in BAD])
def test_bad_values_are_refused_in_every_spelling(class_name, argument, value, spelling):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make(class_name, **{argument: SPELLINGS[spelling](value)})


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("argument", ["learning_rate", "power", "epsilon", "initial_accumulator_value",
                                      "weight_decay", "max_scale", "tail_id_threshold", "cowclip_ratio",
                                      "cowclip_min_norm"])
def test_non_finite_values_are_refused(argument, value):
    with pytest.raises(ValueError, match=f"`{argument}` must be a finite number"):
        make("RowwiseAdagradCounter", **{argument: value})


@pytest.mark.parametrize("argument", ["warmup_steps", "power", "learning_rate", "counter_halflife", "cowclip_ratio"])
def test_bools_are_refused(argument):
    with pytest.raises(ValueError, match=f"`{argument}`.*got True"):
        make("CounterSGD", **{argument: True})


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_good_values_are_accepted_in_every_spelling(spelling):
    as_given = SPELLINGS[spelling]
    optimizer = tf_freqsgd.CounterSGD(as_given(0.5), power=as_given(0.25), warmup_steps=as_given(5),
                                      counter_halflife=as_given(100.0), momentum=as_given(0.5))
    config = optimizer.get_config()
    assert (config["power"], config["warmup_steps"], config["counter_halflife"], config["momentum"]) == (
        0.25, 5, 100.0, 0.5)
    assert type(config["warmup_steps"]) is int
    assert float(optimizer.learning_rate) == 0.5


def test_integral_floats_count_as_integers_and_others_do_not():
    assert tf_freqsgd.CounterSGD(warmup_steps=1e3).rule.warmup_steps == 1000
    with pytest.raises(ValueError, match="`warmup_steps` must be an integer >= 0; got 1.5"):
        tf_freqsgd.CounterSGD(warmup_steps=1.5)


def test_schedules_still_pass():
    schedule = tf.keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert tf_freqsgd.CounterSGD(schedule).get_config()["learning_rate"]["class_name"] == "ExponentialDecay"


def test_the_non_finite_policy_is_a_choice():
    with pytest.raises(ValueError, match="`non_finite` must be one of \\('raise', 'skip'\\)"):
        tf_freqsgd.CounterSGD(non_finite="ignore")


def tfra_glue():
    pytest.importorskip("tensorflow_recommenders_addons")
    from tf_freqsgd import dynamic

    return dynamic


@pytest.mark.parametrize("arguments,message", [
    ({"top_n": True}, "`top_n` must be an integer >= 0; got True"),
    ({"top_n": np.int64(-1)}, "`top_n` must be an integer >= 0"),
    ({"min_count": math.nan}, "`min_count` must be a finite number >= 0"),
    ({"min_count": np.float32(-1)}, "`min_count` must be a finite number >= 0"),
    ({}, "min_count, top_n or both"),
])
def test_eviction_arguments_are_checked_when_given(arguments, message):
    dynamic = tfra_glue()
    with pytest.raises(ValueError, match=message):
        dynamic.evict(tf_freqsgd.CounterSGD(), **arguments)
    with pytest.raises(ValueError, match=message):
        dynamic.FrequencyEviction(**arguments)


def test_eviction_every_n_steps_must_be_a_positive_integer():
    dynamic = tfra_glue()
    with pytest.raises(ValueError, match="`every_n_steps` must be an integer >= 1"):
        dynamic.FrequencyEviction(top_n=2, every_n_steps=0)
