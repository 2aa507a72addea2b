"""Restoring optimizer state into an optimizer of other settings raises before anything is written,
naming the setting that differs: tf.train.Checkpoint (built or not yet built), and .weights.h5."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd

VOCAB, WIDTH = 20, 4


def trained_model(optimizer, seed=0, steps=2):
    tf.keras.utils.set_random_seed(seed)
    ids = tf.keras.Input(shape=(2,), dtype=tf.int64)
    rows = tf.keras.layers.Embedding(VOCAB, WIDTH, name="items")(ids)
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1, name="head")(tf.keras.layers.Flatten()(rows)))
    model.compile(optimizer=optimizer, loss="mse")
    rng = np.random.default_rng(seed)
    if steps:
        model.fit(rng.integers(0, VOCAB, (16 * steps, 2)), rng.normal(size=(16 * steps, 1)), batch_size=16, verbose=0)
    return model


def state(model):
    return [v.numpy().copy() for v in model.weights + model.optimizer.variables]


MISMATCHES = {
    "halflife_to_none": (lambda: tf_freqsgd.CounterSGD(0.1, counter_halflife=3.0), lambda: tf_freqsgd.CounterSGD(0.1),
                         r"counter_halflife is 3.0 in the checkpoint and absent here"),
    "halflife_value": (lambda: tf_freqsgd.CounterSGD(0.1, counter_halflife=3.0),
                       lambda: tf_freqsgd.CounterSGD(0.1, counter_halflife=5.0), "counter_halflife is 3.0 .* 5.0 here"),
    "counter_to_rowwise": (lambda: tf_freqsgd.CounterSGD(0.1), lambda: tf_freqsgd.RowwiseAdagradCounter(0.1),
                           "class is 'CounterSGD' in the checkpoint and 'RowwiseAdagradCounter' here"),
    "momentum_to_none": (lambda: tf_freqsgd.CounterSGD(0.1, momentum=0.9), lambda: tf_freqsgd.CounterSGD(0.1),
                         "momentum is 'on' in the checkpoint and 'off' here"),
    "counting": (lambda: tf_freqsgd.CounterSGD(0.1), lambda: tf_freqsgd.CounterSGD(0.1, counting="presence"),
                 "counting is 'occurrence'"),
}


@pytest.mark.parametrize("built", [True, False], ids=["built", "before_build"])
@pytest.mark.parametrize("case", MISMATCHES)
def test_a_checkpoint_of_other_settings_raises_before_writing(tmp_path, case, built):
    make_saved, make_target, message = MISMATCHES[case]
    saved = trained_model(make_saved())
    path = tf.train.Checkpoint(model=saved).save(str(tmp_path / "ckpt"))
    target = trained_model(make_target(), seed=1, steps=1 if built else 0)
    before = state(target)
    with pytest.raises(ValueError, match=message):
        tf.train.Checkpoint(model=target).restore(path)
    after = state(target)
    assert len(after) == len(before)
    for got, want in zip(after, before):
        np.testing.assert_array_equal(got, want)


def test_a_checkpoint_of_the_same_settings_restores(tmp_path):
    saved = trained_model(tf_freqsgd.CounterSGD(0.1, counter_halflife=3.0, momentum=0.5))
    path = tf.train.Checkpoint(model=saved).save(str(tmp_path / "ckpt"))
    target = trained_model(tf_freqsgd.CounterSGD(0.3, counter_halflife=3.0, momentum=0.9), seed=1, steps=1)
    tf.train.Checkpoint(model=target).restore(path).assert_consumed()
    for got, want in zip(state(target), state(saved)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", ["halflife_to_none", "counter_to_rowwise", "momentum_to_none"])
def test_weights_files_of_other_settings_raise_before_writing(tmp_path, case):
    make_saved, make_target, message = MISMATCHES[case]
    path = str(tmp_path / "model.weights.h5")
    trained_model(make_saved()).save_weights(path)
    target = trained_model(make_target(), seed=1, steps=1)
    before = state(target)
    with pytest.raises(ValueError, match=message.replace("checkpoint", "file")):
        target.load_weights(path)
    for got, want in zip(state(target), before):
        np.testing.assert_array_equal(got, want)
