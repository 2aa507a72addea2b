"""Ranking on MovieLens: rating regression or CTR, trained by any optimizer of the package or tf_keras.

A user and an item embedding (--embedding picks the kind) scored by an MLP (TFRS's ranking
model, 256-64-1). --task=rating predicts the rating (mean squared error) and reports RMSE, and the
AUC of the predicted rating on the CTR view (rating 3 dropped, liked above 3); --task=ctr predicts
"liked" on the CTR view (sigmoid cross-entropy) and reports AUC and log-loss. Metrics are exact
(NumPy) on a held-out 10% of the ratings, after validating on another 10% every epoch.

With --export_dir, writes a SavedModel for TF Serving: ``serving_default`` maps ``user_id`` and
``movie_id`` (raw MovieLens ids, as the retrieval example serves; int64 [batch] each) to ``score``
(float32 [batch]: the predicted rating, or the click probability), ``unknown_user`` and
``unknown_movie``: a pair the model does not know scores the training split's mean rating (or
share of likes); stock TensorFlow ops only.

  .venv/bin/python examples/movielens_ranking.py --dataset=ml-100k \
      --data_dir=../shared/data/ml-100k --optimizer=counter_sgd --task=rating \
      --export_dir=/tmp/movielens_ranking/1
"""

import common
from absl import app, flags

EXAMPLE = "movielens_ranking"
# Each optimizer's best final validation RMSE on ML-100K (--task=rating, 5 epochs, batch 256,
# d = 32) over the grids of README "MovieLens examples" (counter_sgd_adam: counter_sgd's, for its
# tables); losses are means over the batch.
LEARNING_RATES = {"sgd": 0.3, "adagrad": 0.3, "adam": 0.001, "counter_sgd": 0.3, "counter_sgd_adam": 0.3,
                  "frequency_sgd": 0.3, "rowwise_adagrad_counter": 0.1}


def define_flags(flag_values=flags.FLAGS):
    common.define_flags(EXAMPLE, epochs=5, batch_size=256, learning_rates=LEARNING_RATES, flag_values=flag_values)
    flags.DEFINE_enum("task", "rating", common.choices.RANKING_TASKS,
                      "rating: predict the rating (mean squared error; RMSE, and AUC of the prediction on the CTR "
                      "view); ctr: predict rating > 3 on the CTR view (sigmoid cross-entropy; AUC and log-loss).",
                      flag_values=flag_values)


def run(config):
    """Trains, evaluates, exports and reports one configuration; returns (the record, the model)."""
    # TensorFlow, TFRS and the models load here, not at import: the flags and --help need none.
    import steps
    import tensorflow as tf
    from tf_freqsgd.models.distribute import make_strategy
    from tf_freqsgd.models.ranking import RankingModel, evaluate_ranking, export_ranking, label_key, training_view

    strategy = make_strategy(config.strategy)
    config = steps.for_this_task(config, strategy)
    data, (train, validation, test) = steps.load_splits(config)
    tf.keras.utils.set_random_seed(config.seed)
    train_view = training_view(train, config.task)
    with strategy.scope():
        model = RankingModel(data.num_users, data.num_items, task=config.task, embedding=config.embedding,
                             dim=config.embedding_dim, seed=config.seed, **steps.embedding_options(config, strategy))
        model.build_tables()
        steps.compile_model(model, config, train_view, data.num_users, data.num_items)
    label = label_key(config.task)
    trained = steps.fit(model, config, train_view, label=label,
                         validation=steps.evaluation_data(config, training_view(validation, config.task), label))
    metrics = evaluate_ranking(model, test)
    if config.export_dir:
        # An unknown user or movie scores the training split's mean label (rating, or share of likes).
        export_ranking(model, config.export_dir, data.items["movie_id"], user_ids=data.users["user_id"],
                       default_score=float(train_view[label].mean()))
    return steps.report(config, data, metrics, trained), model


if __name__ == "__main__":
    define_flags()
    flags.adopt_module_key_flags(common)
    app.run(common.main_of(EXAMPLE, LEARNING_RATES, run), flags_parser=common.parse_flags)
