import numpy as np
import pytest

from tf_freqsgd.evaluation import auc, log_loss, top_k_metrics


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert auc(labels, scores) == pytest.approx(pairwise)


def test_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both positive and negative"):
        auc(np.ones(3), np.arange(3))


def test_log_loss_is_stable_and_correct():
    logits = np.array([-50.0, 0.0, 50.0])
    labels = np.array([0.0, 1.0, 1.0])
    assert log_loss(labels, logits) == pytest.approx(np.log(2) / 3, rel=1e-9)


def test_top_k_metrics_of_a_hand_computed_case():
    # Targets at positions 0, 2, beyond the row (4 items), 1.
    ranked = np.array([[7, 1, 2, 3], [4, 5, 6, 0], [1, 2, 3, 4], [9, 8, 7, 6]])
    targets = np.array([7, 6, 5, 8])
    metrics = top_k_metrics(ranked, targets, recall_ks=(1, 2, 4), ndcg_k=2)
    assert metrics == pytest.approx({
        "recall@1": 1 / 4, "recall@2": 2 / 4, "recall@4": 3 / 4,
        "ndcg@2": (1 + 0 + 0 + 1 / np.log2(3)) / 4,  # position 2 is outside the top 2
        "mrr@4": (1 + 1 / 3 + 0 + 1 / 2) / 4,
    })


def test_top_k_metrics_refuses_a_k_beyond_the_rows():
    with pytest.raises(ValueError, match="k up to 10 needs rows of at least that many items; got 4"):
        top_k_metrics(np.zeros((2, 4)), np.zeros(2), recall_ks=(1,), ndcg_k=10)
    # Rows ranking the whole catalogue hold every target: recall at any k beyond is 1.
    whole = top_k_metrics(np.array([[1, 0, 2]]), np.array([2]), recall_ks=(1, 10), ndcg_k=10, catalogue_size=3)
    assert whole == pytest.approx({"recall@1": 0.0, "recall@10": 1.0, "ndcg@10": 0.5, "mrr@3": 1 / 3})
