"""Exact evaluation metrics in NumPy (no threshold buckets)."""

import numpy as np


def auc(labels, scores):
    """ROC AUC by ranks; tied scores get their average rank."""
    labels = np.asarray(labels) > 0.5
    scores = np.asarray(scores, np.float64).ravel()
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels.")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    boundaries = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1, len(scores)]
    ranks = np.empty(len(scores))
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels, logits):
    """Mean sigmoid cross-entropy of logits."""
    labels = np.asarray(labels, np.float64)
    logits = np.asarray(logits, np.float64).ravel()
    return float(np.mean(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))))


def top_k_metrics(ranked, targets, recall_ks=(10, 50, 100), ndcg_k=10, catalogue_size=None):
    """Recall@k, NDCG@k and MRR of ranked lists, each query having one relevant item.

    Args:
      ranked: ``[queries, K]`` item ids, each row best first (a retrieval model's top ``K``).
      targets: ``[queries]`` the relevant (held-out) item of each query.
      recall_ks: the ``k`` of each recall, at most ``K``.
      ndcg_k: the ``k`` of NDCG, at most ``K``.
      catalogue_size: the number of items; rows that rank them all (``K == catalogue_size``) take
        any ``k``.

    With ``r`` the 0-based position of the target in its row (none: beyond the row), averaged
    over the queries: ``recall@k`` is ``[r < k]`` (TFRS' top-k categorical accuracy),
    ``ndcg@k`` is ``[r < k] / log2(r + 2)`` (one relevant item: the ideal DCG is 1), and
    ``mrr@K`` is ``1 / (r + 1)``, 0 beyond the row (truncated at ``K``, hence the name).

    Returns ``{"recall@k": ..., "ndcg@<ndcg_k>": ..., "mrr@K": ...}``.
    """
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    if ranked.ndim != 2 or targets.shape != ranked.shape[:1]:
        raise ValueError(f"ranked must be [queries, K] and targets [queries]; got {ranked.shape} and {targets.shape}.")
    depth = ranked.shape[1]
    if max(*recall_ks, ndcg_k) > depth != catalogue_size:
        raise ValueError(f"k up to {max(*recall_ks, ndcg_k)} needs rows of at least that many items; got {depth}.")
    hits = ranked == targets[:, None]
    position = np.where(hits.any(axis=1), hits.argmax(axis=1), depth)
    metrics = {f"recall@{k}": float(np.mean(position < k)) for k in recall_ks}
    metrics[f"ndcg@{ndcg_k}"] = float(np.mean(np.where(position < ndcg_k, 1.0 / np.log2(position + 2.0), 0.0)))
    metrics[f"mrr@{depth}"] = float(np.mean(np.where(position < depth, 1.0 / (position + 1.0), 0.0)))
    return metrics
