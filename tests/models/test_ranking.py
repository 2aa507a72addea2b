"""The ranking model's tasks, its exact evaluation, and the catalogue index of its export."""

import numpy as np
import pytest
import tensorflow as tf

from tf_freqsgd.evaluation import auc, log_loss
from tf_freqsgd.models.ranking import CatalogueIndex, RankingModel, evaluate_ranking, export_ranking

RATINGS = {
    "user_id": np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int64),
    "item_id": np.array([0, 1, 2, 3, 4, 0, 1, 2], np.int64),
    "rating": np.array([5, 1, 3, 4, 2, 5, 3, 1], np.float32),
}
RATINGS["label"] = (RATINGS["rating"] > 3).astype(np.float32)


@pytest.mark.parametrize("task", ["rating", "ctr"])
def test_evaluation_is_exact_on_the_tasks_view(task):
    model = RankingModel(3, 5, task=task, dim=4)
    model.build_tables()
    features = {key: RATINGS[key] for key in ("user_id", "item_id")}
    outputs = model(features).numpy()
    liked = RATINGS["rating"] != 3  # the CTR view drops ratings of 3
    metrics = evaluate_ranking(model, RATINGS)
    if task == "rating":
        rmse = np.sqrt(np.mean((outputs - RATINGS["rating"]) ** 2))
        assert metrics == pytest.approx({"rmse": rmse, "auc": auc(RATINGS["label"][liked], outputs[liked])})
    else:
        assert metrics == pytest.approx({"auc": auc(RATINGS["label"][liked], outputs[liked]),
                                         "log_loss": log_loss(RATINGS["label"][liked], outputs[liked])})


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match=r"Unknown ranking task 'clicks'; expected one of \('rating', 'ctr'\)"):
        RankingModel(3, 5, task="clicks")


def test_catalogue_index_maps_raw_ids_and_names_unknown_ones():
    index = CatalogueIndex([50, 7, 1000, 3], name="movies")
    np.testing.assert_array_equal(index(tf.constant([3, 50, 1000, 7, 50], tf.int64)), [3, 0, 2, 1, 0])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"movies: ids not in the catalogue:.\n8, 2000"):
        index(tf.constant([7, 8, 2000], tf.int64))
    with pytest.raises(ValueError, match="the catalogue's ids must be distinct"):
        CatalogueIndex([1, 2, 1])


def test_export_needs_one_movie_id_per_item(tmp_path):
    model = RankingModel(3, 5, dim=4)
    model.build_tables()
    with pytest.raises(ValueError, match=r"movie_ids has shape \(4,\); expected \(5,\), one per item"):
        export_ranking(model, str(tmp_path), np.arange(4))
