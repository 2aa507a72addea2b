"""The two-tower model's loss (in-batch softmax, accidental hits removed, log-Q), recall@k, and
the export's arguments."""

import numpy as np
import pytest
import tensorflow as tf

import tf_freqsgd
from tf_freqsgd.models.retrieval import RetrievalModel, counter_logq, counts_logq, export_retrieval, ranked_items

USERS, ITEMS, DIM = 4, 6, 3


def model_with_known_vectors(seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    model = RetrievalModel(USERS, ITEMS, dim=DIM, **kwargs)
    model.build_tables()
    users, items = rng.normal(size=(USERS, DIM)), rng.normal(size=(ITEMS, DIM))
    model.user_embedding.embeddings.assign(users)
    model.item_embedding.embeddings.assign(items)
    return model, users, items


def reference_loss(users, items, batch_users, batch_items, q=None):
    """-sum_i log softmax_j(<u_i, v_j> - log q_j)[i], other copies of item i masked out."""
    scores = users[batch_users] @ items[batch_items].T
    if q is not None:
        scores = scores - np.log(q[batch_items])[None, :]
    total = 0.0
    for i in range(len(batch_users)):
        keep = (batch_items != batch_items[i]) | (np.arange(len(batch_items)) == i)
        row = scores[i, keep]
        total -= scores[i, i] - np.log(np.exp(row).sum())
    return total


@pytest.mark.parametrize("log_q", [False, True])
def test_loss_is_the_in_batch_softmax_without_accidental_hits(log_q):
    model, users, items = model_with_known_vectors()
    batch_users, batch_items = np.array([0, 1, 2, 3, 1]), np.array([4, 2, 4, 0, 5])
    q = np.array([0.1, 0.2, 0.05, 0.3, 0.6, 0.25])
    if log_q:
        model.sampling_probability = counts_logq(q)
    loss = model.compute_loss({"user_id": tf.constant(batch_users), "item_id": tf.constant(batch_items)},
                              training=True)
    expected = reference_loss(users, items, batch_users, batch_items, q if log_q else None)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_counter_log_q_reads_the_optimizers_counters():
    model, _, _ = model_with_known_vectors()
    model.compile(tf_freqsgd.CounterSGD(0.1))
    model.optimizer.build(model.trainable_variables)
    probability = counter_logq(model)(tf.constant([3, 3, 1], tf.int64))
    np.testing.assert_allclose(probability, [2.0, 2.0, 1.0])  # step 1: this batch's occurrences
    model.compile(tf.keras.optimizers.legacy.Adagrad(0.1))
    with pytest.raises(ValueError, match=r"logq='counter' needs an optimizer that keeps counters .*got Adagrad"):
        counter_logq(model)


def test_evaluation_reports_recall_at_k_the_share_of_held_out_items_ranked_in_the_top_k():
    model, users, items = model_with_known_vectors(seed=3, ks=(1, 3))
    pairs = {"user_id": np.array([0, 1, 2, 3, 0, 2]), "item_id": np.array([1, 5, 0, 3, 4, 2])}
    scores = users[pairs["user_id"]] @ items.T
    rank = (scores > scores[np.arange(6), pairs["item_id"]][:, None]).sum(axis=1)
    model.compile(tf.keras.optimizers.legacy.SGD(0.1))
    results = model.evaluate(tf.data.Dataset.from_tensor_slices(pairs).batch(4), return_dict=True, verbose=0)
    assert {name: value for name, value in results.items() if name != "loss"} == pytest.approx(
        {"recall@1": np.mean(rank < 1), "recall@3": np.mean(rank < 3)})
    assert 0 < results["recall@1"] < results["recall@3"] < 1
    ranked = ranked_items(model, pairs["user_id"], k=3, batch_size=4)
    np.testing.assert_array_equal(ranked, np.argsort(-scores, axis=1, kind="stable")[:, :3])
    assert np.mean((ranked == pairs["item_id"][:, None]).any(axis=1)) == pytest.approx(results["recall@3"])


def test_ranked_items_leave_out_the_pairs_excluded():
    model, users, items = model_with_known_vectors(seed=3)
    exclude = (np.array([2, 0, 2]), np.array([1, 4, 5]))  # user 2: items 1 and 5; user 0: item 4
    ranked = ranked_items(model, [0, 1, 2], k=ITEMS, exclude=exclude, batch_size=2)
    for row, user in zip(ranked, [0, 1, 2]):
        scores = users[user] @ items.T
        scores[exclude[1][exclude[0] == user]] = -np.inf
        np.testing.assert_array_equal(row, np.argsort(-scores, kind="stable"))
    # A pair held out and also in training (a data set may repeat pairs) keeps its item ranked.
    kept = ranked_items(model, [2, 2], k=ITEMS, exclude=exclude, keep=[5, 0])
    scores = users[2] @ items.T
    assert list(kept[0]).index(5) == (scores[[0, 2, 3, 4]] > scores[5]).sum()
    np.testing.assert_array_equal(kept[1], ranked[2])
    top_scores, top_items = model.recommend([2], k=3)
    user_scores = users[2] @ items.T
    np.testing.assert_array_equal(top_items[0], np.argsort(-user_scores)[:3])
    np.testing.assert_allclose(top_scores[0], np.sort(user_scores)[::-1][:3], rtol=1e-6)


def test_export_arguments_are_checked(tmp_path):
    model, _, _ = model_with_known_vectors()
    counts = np.ones(ITEMS)
    with pytest.raises(ValueError, match=r"movie_ids has shape \(5,\); expected \(6,\), one per item"):
        export_retrieval(model, str(tmp_path), np.arange(5), user_ids=np.arange(USERS), item_counts=counts)
    with pytest.raises(ValueError, match=r"user_ids has shape \(5,\); expected \(4,\), one per user"):
        export_retrieval(model, str(tmp_path), np.arange(6), user_ids=np.arange(5), item_counts=counts)
    with pytest.raises(ValueError, match=r"k must be in \[1, 6\] \(the catalogue size\); got 7"):
        export_retrieval(model, str(tmp_path), np.arange(6), user_ids=np.arange(USERS), k=7, item_counts=counts)
    with pytest.raises(ValueError, match=r"item_counts has shape \(5,\); expected \(6,\), one per item"):
        export_retrieval(model, str(tmp_path), np.arange(6), user_ids=np.arange(USERS), k=3,
                         item_counts=np.ones(5))
    model.compile(tf.keras.optimizers.legacy.Adagrad(0.1))
    with pytest.raises(ValueError, match=r"by the optimizer's counters, and Adagrad keeps none: pass item_counts"):
        export_retrieval(model, str(tmp_path), np.arange(6), user_ids=np.arange(USERS), k=3)


def test_export_ranks_cold_start_items_by_the_counters_or_the_given_counts(tmp_path):
    model, users, items = model_with_known_vectors()
    model.compile(tf_freqsgd.CounterSGD(0.1))
    pairs = {"user_id": np.array([0, 1, 2, 3, 1, 0]), "item_id": np.array([4, 2, 4, 0, 5, 4])}
    model.fit(tf.data.Dataset.from_tensor_slices(pairs).batch(6), verbose=0)
    raw_users, raw_items = np.array([943, 7, 12, 1]), np.arange(ITEMS) * 10 + 1
    serve = lambda: tf.saved_model.load(str(tmp_path)).signatures["serving_default"]  # noqa: E731
    export_retrieval(model, str(tmp_path), raw_items, user_ids=raw_users, k=3)
    served = serve()(user_id=tf.constant([943, 5, 1], tf.int64))
    np.testing.assert_array_equal(served["cold_start"], [False, True, False])
    scores, top = model.recommend([0, 3], k=3)
    np.testing.assert_array_equal(tf.gather(served["movie_ids"], [0, 2]), raw_items[top.numpy()])
    np.testing.assert_allclose(tf.gather(served["scores"], [0, 2]), scores, rtol=1e-6)
    # One step counted item 4 three times, items 0, 2, 5 once (ties in item order).
    np.testing.assert_array_equal(served["movie_ids"][1], raw_items[[4, 0, 2]])
    np.testing.assert_array_equal(served["scores"][1], [3, 1, 1])
    export_retrieval(model, str(tmp_path), raw_items, user_ids=raw_users, k=2, item_counts=[0, 5, 0, 9, 1, 0])
    served = serve()(user_id=tf.constant([2], tf.int64))
    np.testing.assert_array_equal(served["movie_ids"], [raw_items[[3, 1]]])
    np.testing.assert_array_equal(served["scores"], [[9, 5]])
