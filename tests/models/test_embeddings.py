"""make_embedding's kinds, their id tables, and seeding a TFRA table's rows."""

import numpy as np
import pytest
import tensorflow as tf

from tf_freqsgd.layers import MLETEmbedding, PEPEmbedding
from tf_freqsgd.models.embeddings import EMBEDDING_KINDS, id_table, id_tables, make_embedding, seed_rows, table_name

OPTIONS = {"mlet": {"inner_dim": 6}, "pep": {"granularity": "feature"}}


@pytest.mark.parametrize("kind", EMBEDDING_KINDS)
def test_every_kind_maps_ids_to_rows_and_names_its_id_tables(kind):
    layer = make_embedding(kind, 10, 4, name=f"{kind}_ids", seed=1, **OPTIONS.get(kind, {}))
    vectors = layer(tf.constant([[1, 2, 3]], tf.int64))
    assert vectors.shape == (1, 3, 4)
    tables = id_tables(layer)
    expected_shapes = {"table": [(10, 4)], "mlet": [(10, 6)], "pep": [(10, 4), (10, 1)]}
    if kind == "dynamic":
        assert tables == [layer.params] and layer.params.dim == 4
    else:
        assert [tuple(t.shape) for t in tables] == expected_shapes[kind]
        assert id_table(layer) is layer.embeddings
        assert table_name(layer.embeddings) == f"{kind}_ids/embeddings"
    assert isinstance(layer, {"mlet": MLETEmbedding, "pep": PEPEmbedding}.get(kind, tf.keras.layers.Layer))


def test_rows_start_uniform_in_the_init_scale():
    layer = make_embedding("table", 500, 8, name="wide", init_scale=0.05, seed=3)
    layer(tf.constant([0]))
    rows = layer.embeddings.numpy()
    assert rows.min() >= -0.05 and rows.max() <= 0.05 and rows.std() > 0.02


@pytest.mark.parametrize("args, options, message", [
    (("hashed", 10, 4), {}, r"Unknown embedding kind 'hashed'; expected one of \('table', 'dynamic'"),
    (("table", 10, 4), {"inner_dim": 4}, r"kind 'table' takes no option \['inner_dim'\]; its options: none"),
    (("mlet", 10, 4), {}, r"Embedding kind 'mlet' needs the option `inner_dim`"),
    (("pep", 10, 4), {"inner_dim": 4}, r"its options: \['granularity', 'threshold_init'\]"),
    (("table", 0, 4), {}, r"`input_dim` must be a positive integer; got 0"),
    (("table", 10, 2.5), {}, r"`output_dim` must be a positive integer; got 2.5"),
])
def test_bad_arguments_are_named(args, options, message):
    with pytest.raises(ValueError, match=message):
        make_embedding(*args, name="bad", **options)


def test_id_tables_need_a_built_layer_of_a_known_kind():
    with pytest.raises(ValueError, match="Embedding 'unbuilt' is not built yet"):
        id_tables(make_embedding("table", 3, 2, name="unbuilt"))
    with pytest.raises(TypeError, match=r"No id table known for a Dense \('dense_layer'\)"):
        id_tables(tf.keras.layers.Dense(2, name="dense_layer"))


def test_tfra_layers_of_one_name_get_their_own_tables():
    first, second = (make_embedding("dynamic", 5, 2, name="shared_name") for _ in range(2))
    assert (first.name, second.name) == ("shared_name", "shared_name_1")
    assert first.params.name != second.params.name


def test_seed_rows_gives_missing_ids_fixed_rows_and_keeps_the_others():
    layer = make_embedding("dynamic", 8, 3, name="catalogue")
    layer.params.upsert(tf.constant([2], tf.int64), tf.constant([[7.0, 7.0, 7.0]]))
    seed_rows(layer, np.arange(5))
    keys, rows = layer.params.export()
    rows = dict(zip(keys.numpy().tolist(), rows.numpy()))
    assert sorted(rows) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(rows[2], [7.0, 7.0, 7.0])
    ids = tf.constant([0, 1, 3, 4], tf.int64)
    np.testing.assert_array_equal(layer(ids), layer(ids))  # fixed now: no fresh random rows
    assert np.all(np.abs([rows[k] for k in (0, 1, 3, 4)]) <= 0.05)
    seed_rows(make_embedding("table", 3, 2, name="fixed"), [0, 1])  # other kinds: nothing to do
