"""What both Keras fronts' ``dense_optimizer`` share: which variables stay with the frequency-aware
rule (the id tables), and which settings of the dense optimizer are refused."""

# The variables a dense_optimizer leaves to the frequency-aware rule: those whose names (Keras 3:
# paths) hold one of these (Keras' Embedding and tf_freqsgd's layers name their tables
# "embeddings"), and TFRA's tables.
DEFAULT_TABLE_NAMES = ("embeddings",)


def is_table(name, table_names):
    return any(table in name for table in table_names)


def refuse_outer_settings(optimizer, settings):
    """Raises when ``optimizer`` sets any of ``settings``: clipping, EMA and loss scaling belong on
    the frequency-aware optimizer, which applies them to every gradient; its decay is not applied."""
    given = [name for name in settings if optimizer.get_config().get(name)]
    if given:
        raise ValueError(f"`dense_optimizer` {type(optimizer).__name__} sets {', '.join(given)}: set clipping, EMA "
                         "and loss scaling on the frequency-aware optimizer (they apply to every gradient); decay "
                         "of dense variables is not supported through a dense_optimizer.")
