"""Step checks on TFRA dynamic tables inside a traced model.fit (Grappler on): a NaN label raises and
leaves the hash tables, the optimizer's width-1 tables and the dense layers as they were; the skip
policy drops the step and its t."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd

de = pytest.importorskip("tensorflow_recommenders_addons.dynamic_embedding")
_names = itertools.count()


def build_model(optimizer):
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input(shape=(2,), dtype=tf.int64)
    embedding = de.keras.layers.Embedding(4, initializer=tf.keras.initializers.Constant(0.1),
                                          name=f"reliability_table_{next(_names)}")
    pooled = tf.keras.layers.GlobalAveragePooling1D()(embedding(ids))
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1, kernel_initializer="ones")(pooled))
    model.compile(optimizer, "mse")
    return model, embedding


def exported(table):
    keys, values = table.export()
    order = np.argsort(keys.numpy())
    return keys.numpy()[order], values.numpy()[order]


def state(model, embedding):
    tables = [embedding.params] + [t for _, slots in model.optimizer.dynamic_tables.values()
                                   for t in slots.values() if isinstance(t, de.Variable)]
    return ([array for table in tables for array in exported(table)] + [w.numpy() for w in model.layers[-1].weights]
            + [int(model.optimizer.iterations), int(model.optimizer.applied_steps)])


def assert_same(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got, want)


IDS = np.array([[5, 2**40], [7, 5], [-3, 9], [11, 7], [5, 13], [2, 3]], np.int64)
LABELS = np.array([[1.0], [0.0], [0.5], [1.0], [0.2], [0.0]], np.float32)


def batch(i, nan=False):
    labels = LABELS[2 * i:2 * i + 2].copy()
    if nan:
        labels[0] = np.nan
    return IDS[2 * i:2 * i + 2], labels


def fit(model, batches):
    model.fit(np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]), batch_size=2,
              shuffle=False, verbose=0)


@pytest.mark.parametrize("class_name", ["CounterSGD", "RowwiseAdagradCounter"])
def test_a_nan_label_raises_and_leaves_every_table_as_it_was(class_name):
    make = getattr(tf_freqsgd, class_name)
    model, embedding = build_model(make(0.5, counter_halflife=3.0))
    fit(model, [batch(0)])
    before = state(model, embedding)
    with pytest.raises(tf.errors.InvalidArgumentError, match="has a non-finite value"):
        fit(model, [batch(1, nan=True)])
    assert_same(state(model, embedding), before)
    assert not np.isin([9, -3], exported(embedding.params)[0]).any()


def test_the_skip_policy_drops_the_step_on_dynamic_tables():
    skipping, skipping_embedding = build_model(tf_freqsgd.CounterSGD(0.5, non_finite="skip"))
    fit(skipping, [batch(0), batch(1, nan=True), batch(2)])
    clean, clean_embedding = build_model(tf_freqsgd.CounterSGD(0.5, non_finite="skip"))
    fit(clean, [batch(0), batch(2)])
    assert_same(state(skipping, skipping_embedding), state(clean, clean_embedding))


def test_dynamic_counters_count_exactly_to_2_31_and_beyond():
    """TFRA's width-1 counter tables hold the same int32 codes as fixed tables."""
    from tf_freqsgd.optimizers.counter import encode_counts_numpy

    model, embedding = build_model(tf_freqsgd.CounterSGD(0.5))
    fit(model, [batch(0)])  # builds the tables; ids 5 and 2**40 seen once
    counter = model.optimizer.row_state(embedding.params)["counter"]
    keys = tf.constant([5, 2**40], tf.int64)
    counter.upsert(keys, tf.constant(encode_counts_numpy([[2**31 - 4], [2**40]])))
    for _ in range(2):
        fit(model, [(np.array([[5, 5]]), np.array([[1.0]], np.float32))])
    counts = model.optimizer.counts(embedding.params, keys).numpy()
    assert counts[0] == 2**31  # 2^31 - 4, then two occurrences a step, twice
    assert counts[1] == 2**40
    assert counter.lookup(keys[:1]).numpy()[0, 0] < 0  # held as float32 bits
