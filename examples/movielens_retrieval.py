"""TFRS two-tower retrieval on MovieLens, trained by any optimizer of the package or tf_keras.

User and item towers (one embedding each; --embedding picks the kind) trained with in-batch
softmax negatives (TFRS ``Retrieval``, loss summed over the batch, accidental hits removed), with
log-Q correction of the negatives' popularity (--logq): from the optimizer's own counters
(``counter``: q = c/N_t) or from the training split's counts (``counts``). Reports test
recall@10/50/100, NDCG@10 and MRR@100 over the whole catalogue on a held-out 10% of the ratings
(--exclude_rated: each user's training movies left out of their ranking), after validating
recall@k (TFRS ``FactorizedTopK``) on another 10% every epoch.

The default rates suit --embedding=table, dynamic and pep. MLET's projection is a dense matrix
that every batch's summed gradient updates: with counter_sgd, 0.005 trains on ML-100K where the
default 0.02 diverges (the run stops, naming the rate).

With --export_dir, writes a SavedModel for TF Serving: ``serving_default`` maps ``user_id``
(int64 [batch], the raw MovieLens user id) to ``movie_ids`` (int64 [batch, top_k], raw MovieLens
ids, best first), ``scores`` and ``cold_start``: a user unknown to the model gets the most-trained
movies (by the optimizer's counters, or the training split's counts), flagged; stock TensorFlow ops
only (TFRA tables frozen, MLET collapsed, PEP pruned). ``assets.extra/movies.tsv`` in it lists each
movie's title (see serve_demo.py).

  .venv/bin/python examples/movielens_retrieval.py --dataset=ml-100k \
      --data_dir=../shared/data/ml-100k --optimizer=counter_sgd \
      --export_dir=/tmp/movielens_retrieval/1
"""

import dataclasses

import common
import numpy as np
from absl import app, flags

EXAMPLE = "movielens_retrieval"
# Each optimizer's best final validation recall@10 on ML-100K (5 epochs, batch 1024, d = 32,
# --logq=auto) over the grids of README "MovieLens examples" (counter_sgd_adam: counter_sgd's; the
# towers are tables alone); the loss is summed over the batch, so rates are small.
LEARNING_RATES = {"sgd": 0.02, "adagrad": 0.01, "adam": 0.001, "counter_sgd": 0.02, "counter_sgd_adam": 0.02,
                  "frequency_sgd": 0.02, "rowwise_adagrad_counter": 0.03}


def define_flags(flag_values=flags.FLAGS):
    common.define_flags(EXAMPLE, epochs=5, batch_size=1024, learning_rates=LEARNING_RATES, flag_values=flag_values)
    flags.DEFINE_enum("logq", "auto", ("auto",) + common.choices.LOGQ_MODES,
                      "Log-Q correction of the in-batch negatives' popularity: counter (q = c/N_t from the "
                      "optimizer's counters of the item table: counter_sgd or rowwise_adagrad_counter); counts (q "
                      "from the training split's item counts); none; auto: counter where the optimizer keeps "
                      "counters, else counts.", flag_values=flag_values)
    flags.DEFINE_integer("top_k", 10, "Movies the exported model returns per user.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_bool("exclude_rated", False,
                      "Test metrics: rank for each user only the movies they did not rate in training (off: as in the "
                      "TFRS tutorial, a movie rated in training may take a place in the top k).",
                      flag_values=flag_values)
    flags.register_multi_flags_validator(
        ["logq", "optimizer"],
        lambda values: values["logq"] != "counter" or values["optimizer"] in common.choices.COUNTER_OPTIMIZERS,
        message=f"--logq=counter needs an optimizer that keeps counters "
                f"({', '.join(common.choices.COUNTER_OPTIMIZERS)}); "
                "use --logq=counts with the others.", flag_values=flag_values)


def resolved_logq(config):
    """``config.logq``, with "auto" resolved for ``config.optimizer``."""
    if config.logq != "auto":
        return config.logq
    return "counter" if config.optimizer in common.choices.COUNTER_OPTIMIZERS else "counts"


def sampling_probability(config, model, train, num_items):
    """The log-Q probabilities of ``config.logq``, or None."""
    import steps
    from tf_freqsgd.models.retrieval import counter_logq, counts_logq
    from tf_freqsgd.models.training import id_frequencies

    if config.logq == "counter":
        return counter_logq(model)
    if config.logq == "counts":
        return counts_logq(id_frequencies(train["item_id"], num_items, steps.steps_per_epoch(config, train))[0])
    return None


def run(config):
    """Trains, evaluates, exports and reports one configuration; returns (the record, the model)."""
    # TensorFlow, TFRS and the models load here, not at import: the flags and --help need none.
    import steps
    import tensorflow as tf
    from tf_freqsgd.evaluation import top_k_metrics
    from tf_freqsgd.models.distribute import make_strategy
    from tf_freqsgd.models.retrieval import RECALL_KS, RetrievalModel, export_retrieval, ranked_items

    config = dataclasses.replace(config, logq=resolved_logq(config))
    strategy = make_strategy(config.strategy)
    config = steps.for_this_task(config, strategy)
    data, (train, validation, test) = steps.load_splits(config)
    tf.keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = RetrievalModel(data.num_users, data.num_items, embedding=config.embedding, dim=config.embedding_dim,
                               seed=config.seed, **steps.embedding_options(config, strategy))
        model.build_tables()
        steps.compile_model(model, config, train, data.num_users, data.num_items)
        model.sampling_probability = sampling_probability(config, model, train, data.num_items)
    trained = steps.fit(model, config, train, validation=steps.evaluation_data(config, validation))
    rated = (train["user_id"], train["item_id"]) if config.exclude_rated else None
    ranked = ranked_items(model, test["user_id"], max(RECALL_KS), exclude=rated, keep=test["item_id"])
    metrics = top_k_metrics(ranked, test["item_id"], recall_ks=RECALL_KS, ndcg_k=10, catalogue_size=data.num_items)
    if config.export_dir:
        # Optimizers without counters rank cold-start movies by the training split's counts.
        item_counts = (None if config.optimizer in common.choices.COUNTER_OPTIMIZERS
                       else np.bincount(train["item_id"], minlength=data.num_items))
        export_retrieval(model, config.export_dir, data.items["movie_id"], user_ids=data.users["user_id"],
                         k=config.top_k, titles=data.items["title"], item_counts=item_counts)
    return steps.report(config, data, metrics, trained), model


if __name__ == "__main__":
    define_flags()
    flags.adopt_module_key_flags(common)
    app.run(common.main_of(EXAMPLE, LEARNING_RATES, run), flags_parser=common.parse_flags)
