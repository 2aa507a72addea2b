"""Run by test_distributed_checks.py in its own process: a MirroredStrategy over two logical CPUs
must be configured before TensorFlow starts its devices. Prints one JSON line of findings."""

import json
import re
import sys

import numpy as np

import tf_freqsgd  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

VOCAB, WIDTH = 30, 4


def build(strategy, optimizer):
    with strategy.scope():
        tf.keras.utils.set_random_seed(0)
        ids = tf.keras.Input(shape=(2,), dtype=tf.int64)
        rows = tf.keras.layers.Embedding(VOCAB, WIDTH, name="items")(ids)
        score = tf.keras.layers.Dense(1, name="head")(tf.keras.layers.Flatten()(rows))
        model = tf.keras.Model(ids, score)
        model.compile(optimizer=optimizer(), loss="mse")
    return model


def data(labels_with_nan=()):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (48, 2))
    labels = rng.normal(size=(48, 1)).astype(np.float32)
    for batch in labels_with_nan:
        labels[16 * batch + 3] = np.nan
    return ids, labels


def state(model):
    return [v.numpy().copy() for v in model.weights] + [
        np.asarray(v.numpy()) for v in model.optimizer.variables]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def main(class_name):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    make = getattr(tf_freqsgd, class_name)
    findings = {"replicas": strategy.num_replicas_in_sync}

    model = build(strategy, lambda: make(0.05))
    ids, labels = data()
    model.fit(ids[:16], labels[:16], batch_size=16, verbose=0)
    before = state(model)
    bad_ids, bad_labels = data(labels_with_nan=[1])
    try:
        model.fit(bad_ids[16:32], bad_labels[16:32], batch_size=16, verbose=0)
        findings["raised"] = None
    except tf.errors.InvalidArgumentError as error:
        findings["raised"] = re.search(r"gradient for variable \\?'[^']*' has a non-finite value", str(error)).group(0)
    findings["unchanged_after_raise"] = same(state(model), before)

    skipping = build(strategy, lambda: make(0.05, non_finite="skip"))
    skipping.fit(bad_ids, bad_labels, batch_size=16, shuffle=False, verbose=0)
    clean = build(strategy, lambda: make(0.05, non_finite="skip"))
    keep = np.r_[0:16, 32:48]
    clean.fit(ids[keep], labels[keep], batch_size=16, shuffle=False, verbose=0)
    findings["skip_equals_clean"] = same(state(skipping), state(clean))
    findings["skip_iterations"] = int(skipping.optimizer.iterations.numpy())
    print(json.dumps(findings))


if __name__ == "__main__":
    main(sys.argv[1])
