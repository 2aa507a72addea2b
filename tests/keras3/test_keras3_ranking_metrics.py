"""The examples' ranking metrics (tf_freqsgd.evaluation.top_k_metrics, NumPy over a model's top-k)
equal keras-rs's NDCG, MRR and recall on the same scores. keras-rs does not import on the pinned
stack's TensorFlow 2.16: the check runs on the current stack (TensorFlow and JAX backends)."""

import numpy as np
import pytest

from tf_freqsgd.evaluation import top_k_metrics

keras_rs = pytest.importorskip("keras_rs")

QUERIES, ITEMS, DEPTH = 128, 24, 12


@pytest.mark.parametrize("seed", [0, 1])
def test_top_k_metrics_equal_keras_rs(seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(QUERIES, ITEMS)).astype(np.float32)  # no ties
    targets = rng.integers(0, ITEMS, QUERIES)
    relevance = np.zeros_like(scores)
    relevance[np.arange(QUERIES), targets] = 1.0
    ranked = np.argsort(-scores, axis=1)[:, :DEPTH]  # a retrieval model's top DEPTH, best first
    ours = top_k_metrics(ranked, targets, recall_ks=(1, 5, 10), ndcg_k=10)
    theirs = {f"recall@{k}": keras_rs.metrics.RecallAtK(k=k) for k in (1, 5, 10)}
    theirs.update({"ndcg@10": keras_rs.metrics.NDCG(k=10), f"mrr@{DEPTH}": keras_rs.metrics.MeanReciprocalRank(k=DEPTH)})
    assert set(ours) == set(theirs)
    for name, metric in theirs.items():
        metric.update_state(relevance, scores)
        assert ours[name] == pytest.approx(float(metric.result()), abs=1e-6), name
    assert 0 < ours["recall@1"] < ours["recall@10"] < 1  # targets inside and beyond the lists: the test is sound
