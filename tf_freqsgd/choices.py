"""The names the examples' flags choose from: optimizers, embedding kinds, strategies, datasets,
log-Q modes and ranking tasks. The modules that act on them import them from here.

This module imports nothing, so that a program's ``--help`` can list the choices without
importing TensorFlow (seconds): examples/common.py reads this file alone, since importing it as
``tf_freqsgd.choices`` runs ``tf_freqsgd/__init__.py``, which imports TensorFlow.
"""

# tf_freqsgd.models.training.make_optimizer's names, in the order --helpfull lists them.
OPTIMIZERS = ("sgd", "adagrad", "adam", "counter_sgd", "counter_sgd_adam", "frequency_sgd", "rowwise_adagrad_counter")
# Those that keep a counter per row (log-Q from counters, counter histograms).
COUNTER_OPTIMIZERS = ("counter_sgd", "counter_sgd_adam", "rowwise_adagrad_counter")
# The rate of counter_sgd_adam's Adam for the dense layers: Keras' default, not tuned per task.
DENSE_ADAM_RATE = 0.001
OPTIMIZER_DESCRIPTIONS = {
    "sgd": "tf_keras legacy SGD (no state; the legacy optimizers update only the rows of the batch)",
    "adagrad": "tf_keras legacy Adagrad (d floats of state per row)",
    "adam": "tf_keras legacy Adam (2d floats per row; sparse rows get lazy moment updates)",
    "counter_sgd": "tf_freqsgd.CounterSGD: rate lr * (c_k/t)^-0.5 from one counter per row",
    "counter_sgd_adam": f"CounterSGD on the id tables, tf_keras Adam (lr {DENSE_ADAM_RATE:g}) on the other variables "
                        "(dense_optimizer)",
    "frequency_sgd": "tf_freqsgd.FrequencySGD: rate lr * p_k^-0.5, p_k counted from the training split",
    "rowwise_adagrad_counter": "tf_freqsgd.RowwiseAdagradCounter: row-wise Adagrad times the counter scale",
}

# tf_freqsgd.models.embeddings.make_embedding's kinds.
EMBEDDING_KINDS = ("table", "dynamic", "mlet", "pep")

# tf_freqsgd.models.distribute.make_strategy's kinds.
STRATEGIES = ("one", "mirrored", "multi_worker", "parameter_server")

# tf_freqsgd.data.load_movielens's datasets: the synthetic ones, the releases, and "auto" (the
# release whose files are in the directory given).
DATASETS = ("synthetic", "synthetic-1m", "ml-100k", "ml-1m", "ml-latest-small", "ml-latest", "ml-20m", "ml-25m",
            "auto")

# The log-Q corrections of tf_freqsgd.models.retrieval (counter_logq, counts_logq, or none).
LOGQ_MODES = ("none", "counter", "counts")

# tf_freqsgd.models.ranking.RankingModel's tasks.
RANKING_TASKS = ("rating", "ctr")
