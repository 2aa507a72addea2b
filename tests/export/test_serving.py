"""export_for_serving: SavedModels of TFRA dynamic-embedding models that stock TensorFlow serves.

The central check loads the export in a fresh Python that imports TensorFlow alone, so a
leftover ``TFRA>`` op would fail there with "Op type not registered".
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tf_freqsgd  # noqa: F401  (selects legacy Keras before TensorFlow is imported)
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_recommenders_addons import dynamic_embedding as de

from tf_freqsgd.export import export_for_serving, static_embedding_from

EMBEDDING_SIZE = 4
USER_DEFAULT = 0.05
ITEM_DEFAULT = -0.03
TF_FREQSGD_OPS = {"ResourceSparseApplyCounterSGD", "ResourceSparseApplyRowwiseAdagradCounter"}


def hashed_ids(rng, shape):
    """Ids spread over the whole int64 range, negative ones included, as feature hashing gives."""
    info = np.iinfo(np.int64)
    return rng.integers(info.min, info.max, size=shape, dtype=np.int64)


def two_tower_model():
    """users (B, 1) and items (B, 3) -> two dynamic embeddings -> dense -> score."""
    users = tf.keras.Input(shape=(1,), dtype=tf.int64, name="users")
    items = tf.keras.Input(shape=(3,), dtype=tf.int64, name="items")
    user_embedding = de.keras.layers.Embedding(
        EMBEDDING_SIZE, initializer=tf.keras.initializers.Constant(USER_DEFAULT), name="export_user_embedding")
    item_embedding = de.keras.layers.Embedding(
        EMBEDDING_SIZE, initializer=tf.keras.initializers.Constant(ITEM_DEFAULT), name="export_item_embedding")
    user_vector = tf.keras.layers.Flatten()(user_embedding(users))
    item_vector = tf.keras.layers.GlobalAveragePooling1D()(item_embedding(items))
    hidden = tf.keras.layers.Dense(8, activation="relu")(
        tf.keras.layers.Concatenate()([user_vector, item_vector]))
    score = tf.keras.layers.Dense(1, name="score")(hidden)
    return tf.keras.Model([users, items], score)


def train(model, inputs, steps=3):
    """A few eager steps with TFRA's own optimizer wrapper, which writes rows into the tables.

    (Eager steps, not fit(): tracing TFRA's train step costs ~15 s on two cores.)
    """
    optimizer = de.DynamicEmbeddingOptimizer(tf.keras.optimizers.Adagrad(0.5))
    labels = np.linspace(-1.0, 1.0, len(inputs[0]), dtype=np.float32)[:, None]
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(inputs, training=True) - labels) ** 2)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained two-tower model, its training ids, and its export."""
    rng = np.random.default_rng(7)
    users, items = hashed_ids(rng, (32, 1)), hashed_ids(rng, (32, 3))
    model = two_tower_model()
    train(model, [users, items])
    export_dir = str(tmp_path_factory.mktemp("export") / "1")
    export_for_serving(model, export_dir)
    return {"model": model, "users": users, "items": items, "export_dir": export_dir}


def seen_and_unseen_queries(trained):
    """Rows 0-3: seen ids only; rows 4-5: unseen ids only; rows 6-7: seen users, items mixed."""
    users, items = trained["users"], trained["items"]
    rng = np.random.default_rng(11)
    unseen_users, unseen_items = hashed_ids(rng, (2, 1)), hashed_ids(rng, (4, 3))
    mixed_items = np.concatenate([unseen_items[2:, :2], items[:2, 2:]], axis=1)
    return (np.concatenate([users[:4], unseen_users, users[4:6]]),
            np.concatenate([items[:4], unseen_items[:2], mixed_items]))


def serve_in_fresh_tensorflow(export_dir, inputs, workdir):
    """Calls serving_default in a new Python that imports TensorFlow and nothing of TFRA's or ours."""
    np.savez(workdir / "inputs.npz", **inputs)
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import tensorflow as tf
        export_dir, inputs_path, outputs_path = sys.argv[1:]
        serve = tf.saved_model.load(export_dir).signatures["serving_default"]
        inputs = {name: tf.constant(value) for name, value in np.load(inputs_path).items()}
        np.savez(outputs_path, **{name: value.numpy() for name, value in serve(**inputs).items()})
        assert "tensorflow_recommenders_addons" not in sys.modules
        assert "tf_freqsgd" not in sys.modules
    """)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    completed = subprocess.run(
        [sys.executable, "-c", script, export_dir, str(workdir / "inputs.npz"), str(workdir / "outputs.npz")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return dict(np.load(workdir / "outputs.npz"))


def serve_in_process(export_dir, **inputs):
    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    return {name: value.numpy() for name, value in serve(**inputs).items()}


def op_types(saved_model_dir):
    """Op types of every node in the SavedModel's graphs and their function library."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as file:
        saved_model.ParseFromString(file.read())
    types = set()
    for meta_graph in saved_model.meta_graphs:
        types.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            types.update(node.op for node in function.node_def)
    return types


def filled_embedding(name, ids, **kwargs):
    """A dynamic embedding whose table holds ``ids`` with random rows, without training.

    TFRA keys tables by layer name, process-wide: layers of one name share one table, so every
    test names its layers apart.
    """
    layer = de.keras.layers.Embedding(EMBEDDING_SIZE, name=name, **kwargs)
    rows = np.random.default_rng(len(ids)).normal(size=(len(ids), EMBEDDING_SIZE)).astype(np.float32)
    layer.params.upsert(tf.constant(ids, tf.int64), tf.constant(rows))
    return layer


def pooled_score_model(embedding):
    ids = tf.keras.Input(shape=(2,), dtype=tf.int64, name="ids")
    pooled = tf.keras.layers.GlobalAveragePooling1D()(embedding(ids))
    return tf.keras.Model(ids, tf.keras.layers.Dense(1, name="score")(pooled))


def test_training_filled_the_tables(trained):
    model, users, items = trained["model"], trained["users"], trained["items"]
    assert int(model.get_layer("export_user_embedding").params.size()) == len(np.unique(users))
    assert int(model.get_layer("export_item_embedding").params.size()) == len(np.unique(items))


def test_stock_tensorflow_serves_the_training_model_scores(trained, tmp_path):
    users, items = seen_and_unseen_queries(trained)
    expected = trained["model"]([users, items], training=False).numpy()
    served = serve_in_fresh_tensorflow(trained["export_dir"], {"users": users, "items": items}, tmp_path)
    np.testing.assert_allclose(served["score"], expected, rtol=0, atol=1e-6)


def test_saved_graph_holds_stock_ops_only(trained):
    types = op_types(trained["export_dir"])
    assert {"LowerBound", "ResourceGather"} <= types  # tf.searchsorted and the row gather
    assert not [op for op in types if op.startswith("TFRA>")]
    assert not types & TF_FREQSGD_OPS


def test_unseen_ids_get_what_tfra_returns_for_a_constant_initializer(trained):
    layer = trained["model"].get_layer("export_item_embedding")
    unseen = hashed_ids(np.random.default_rng(99), (2, 3))
    constant_rows = np.full((2, 3, EMBEDDING_SIZE), ITEM_DEFAULT, np.float32)
    np.testing.assert_array_equal(layer(unseen).numpy(), constant_rows)  # TFRA: the initializer's value
    np.testing.assert_array_equal(static_embedding_from(layer)(unseen).numpy(), constant_rows)


def test_random_initializer_leaves_unseen_ids_at_zero_with_a_warning():
    seen = hashed_ids(np.random.default_rng(3), (6,))
    layer = filled_embedding("random_init", seen)  # TFRA's default initializer, RandomNormal
    unseen = hashed_ids(np.random.default_rng(4), (3,))
    tfra_rows = layer(unseen).numpy()
    assert not np.array_equal(tfra_rows[0], tfra_rows[1])  # TFRA: a row per batch position
    with pytest.warns(UserWarning, match="returns zeros"):
        frozen = static_embedding_from(layer)
    np.testing.assert_array_equal(frozen(unseen).numpy(), np.zeros((3, EMBEDDING_SIZE), np.float32))
    np.testing.assert_array_equal(frozen(seen).numpy(), layer(seen).numpy())


def test_int32_ids_serve_through_an_int32_signature(tmp_path):
    seen = np.array([-7, 0, 3, 2**31 - 1], np.int64)  # ids int32 can hold
    model = pooled_score_model(filled_embedding("int32_ids", seen, initializer=tf.keras.initializers.Zeros()))
    export_dir = str(tmp_path / "int32")
    export_for_serving(model, export_dir, input_signature=[tf.TensorSpec([None, 2], tf.int32)])
    ids = np.array([[-7, 0], [3, 2**31 - 1], [5, -7], [11, 12]], np.int64)
    served = serve_in_process(export_dir, ids=tf.constant(ids, tf.int32))
    np.testing.assert_allclose(served["score"], model(ids, training=False).numpy(), rtol=0, atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="int32"):  # the signature's dtype
        serve_in_process(export_dir, ids=tf.constant(ids))


def test_sequential_tower_nested_in_a_functional_model(tmp_path):
    seen = hashed_ids(np.random.default_rng(5), (8,))
    tower = tf.keras.Sequential([
        tf.keras.Input(shape=(2,), dtype=tf.int64),
        filled_embedding("in_tower", seen, initializer=tf.keras.initializers.Zeros()),
        tf.keras.layers.GlobalAveragePooling1D(),
        tf.keras.layers.Dense(3, name="tower_out"),
    ], name="tower")
    ids = tf.keras.Input(shape=(2,), dtype=tf.int64, name="ids")
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1, name="score")(tower(ids)))
    export_dir = str(tmp_path / "nested")
    export_for_serving(model, export_dir)
    queries = np.concatenate([seen.reshape(4, 2), hashed_ids(np.random.default_rng(6), (2, 2))])
    served = serve_in_process(export_dir, ids=tf.constant(queries))
    np.testing.assert_allclose(served["score"], model(queries, training=False).numpy(), rtol=0, atol=1e-6)
    assert not [op for op in op_types(export_dir) if op.startswith("TFRA>")]


def test_existing_export_dir_is_refused_unless_overwrite(tmp_path):
    embedding = filled_embedding("overwritten", [1, 2], initializer=tf.keras.initializers.Zeros())
    model = pooled_score_model(embedding)
    export_dir = tmp_path / "1"
    export_dir.mkdir()
    (export_dir / "stale.txt").write_text("from an older export")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_for_serving(model, str(export_dir))
    assert os.listdir(export_dir) == ["stale.txt"]
    export_for_serving(model, str(export_dir), overwrite=True)
    assert "stale.txt" not in os.listdir(export_dir)
    assert "saved_model.pb" in os.listdir(export_dir)
    assert os.listdir(tmp_path) == ["1"]  # no staging directory left behind


def test_unsupported_dynamic_layer_is_named(tmp_path):
    ids = tf.keras.Input(shape=(2,), dtype=tf.int64)
    squashed = de.keras.layers.SquashedEmbedding(EMBEDDING_SIZE, name="squashed")(ids)
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1)(squashed))
    with pytest.raises(TypeError, match="'squashed' is a SquashedEmbedding"):
        export_for_serving(model, str(tmp_path / "1"))
    assert os.listdir(tmp_path) == []


def test_max_norm_is_refused(tmp_path):
    model = pooled_score_model(de.keras.layers.Embedding(EMBEDDING_SIZE, max_norm=1.0, name="clipped"))
    with pytest.raises(TypeError, match="'clipped' sets max_norm"):
        export_for_serving(model, str(tmp_path / "1"))


def test_subclassed_model_is_refused(tmp_path):
    class Scorer(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.embedding = de.keras.layers.Embedding(EMBEDDING_SIZE, name="in_subclassed")

        def call(self, ids):
            return tf.reduce_sum(self.embedding(ids), axis=[1, 2])

    model = Scorer()
    model(tf.constant([[1, 2]], tf.int64))
    with pytest.raises(TypeError, match="supports Functional and Sequential"):
        export_for_serving(model, str(tmp_path / "1"))


class LookupWrapper(tf.keras.layers.Layer):
    """A custom layer that owns a dynamic embedding: export cannot see inside it."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = de.keras.layers.Embedding(EMBEDDING_SIZE, name="in_wrapper")

    def call(self, ids):
        return self.inner(ids)


def test_table_hidden_in_a_custom_layer_fails_the_op_check(tmp_path):
    model = pooled_score_model(LookupWrapper(name="wrapper"))
    with pytest.raises(RuntimeError, match="TFRA>CuckooHashTableFind"):
        export_for_serving(model, str(tmp_path / "1"))
    assert os.listdir(tmp_path) == []  # the unservable export was not kept


class ServableLookupWrapper(tf.keras.layers.Layer):
    """A custom layer owning a dynamic embedding that names its serving form (the export hook)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = filled_embedding("in_servable_wrapper", [3, 4, 5], initializer=tf.keras.initializers.Zeros())

    def call(self, ids):
        return 2.0 * self.inner(ids)

    def serving_layer(self):
        return DoubledLookup(static_embedding_from(self.inner), name=self.name)


class DoubledLookup(tf.keras.layers.Layer):
    def __init__(self, lookup, **kwargs):
        super().__init__(**kwargs)
        self.lookup = lookup

    def call(self, ids):
        return 2.0 * self.lookup(ids)


def test_a_layer_with_serving_layer_is_replaced_by_it_in_nested_models(tmp_path):
    tower = tf.keras.Sequential([
        tf.keras.Input(shape=(2,), dtype=tf.int64),
        ServableLookupWrapper(name="servable"),
        tf.keras.layers.GlobalAveragePooling1D(),
    ], name="servable_tower")
    ids = tf.keras.Input(shape=(2,), dtype=tf.int64, name="ids")
    model = tf.keras.Model(ids, tf.keras.layers.Dense(1, name="score")(tower(ids)))
    export_dir = str(tmp_path / "1")
    export_for_serving(model, export_dir)
    queries = np.array([[3, 4], [5, 99]], np.int64)
    served = serve_in_process(export_dir, ids=tf.constant(queries))
    np.testing.assert_allclose(served["score"], model(queries).numpy(), rtol=0, atol=1e-6)
    assert not [op for op in op_types(export_dir) if op.startswith("TFRA>")]
