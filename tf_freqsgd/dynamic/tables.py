"""TFRA tables of Keras layers, by name."""

from tensorflow.python.ops import variable_scope


def layer_table_exists(layer_name):
    """True when this process already holds the table of a TFRA ``Embedding`` layer named
    ``layer_name``: a new layer of that name would share it, or fail to make its own."""
    table = f"{layer_name}-parameter" if layer_name else "EmbeddingParameter"
    try:  # TFRA's de.get_variable keeps its tables in TensorFlow's v1 variable store
        return table in variable_scope._get_default_variable_store()._vars
    except AttributeError:
        return False
