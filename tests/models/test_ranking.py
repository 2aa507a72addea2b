"""The ranking model's tasks, its exact evaluation, and its export's arguments."""

import numpy as np
import pytest
import tensorflow as tf

from tf_freqsgd.evaluation import auc, log_loss
from tf_freqsgd.models.ranking import RankingModel, evaluate_ranking, export_ranking

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


def test_export_arguments_are_checked(tmp_path):
    model = RankingModel(3, 5, dim=4)
    model.build_tables()
    with pytest.raises(ValueError, match=r"movie_ids has shape \(4,\); expected \(5,\), one per item"):
        export_ranking(model, str(tmp_path), np.arange(4), user_ids=np.arange(3), default_score=3.5)
    with pytest.raises(ValueError, match=r"user_ids has shape \(2,\); expected \(3,\), one per user"):
        export_ranking(model, str(tmp_path), np.arange(5), user_ids=np.arange(2), default_score=3.5)
    with pytest.raises(ValueError, match=r"IdIndex 'user_index': the ids must be distinct"):
        export_ranking(model, str(tmp_path), np.arange(5), user_ids=[1, 2, 1], default_score=3.5)
    with pytest.raises(ValueError, match=r"default_score must be finite; got nan"):
        export_ranking(model, str(tmp_path), np.arange(5), user_ids=np.arange(3), default_score=float("nan"))
