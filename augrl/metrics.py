"""Evaluation metrics: accuracy and macro-F1 for classification, Pearson and Spearman for regression."""

from __future__ import annotations

import numpy as np
from scipy import stats


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    """Fraction of predicted class indices equal to the gold ones. Shapes: (N,), (N,)."""
    return float(np.mean(np.asarray(pred) == np.asarray(gold))) if len(gold) else 0.0


def macro_f1(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> float:
    """Unweighted mean over classes of F1; a class never predicted nor present scores 0."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    scores = []
    for c in range(num_labels):
        tp = np.sum((pred == c) & (gold == c))
        fp = np.sum((pred == c) & (gold != c))
        fn = np.sum((pred != c) & (gold == c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def _correlation(fn, pred: np.ndarray, gold: np.ndarray) -> float:
    pred, gold = np.asarray(pred, dtype=float), np.asarray(gold, dtype=float)
    if len(gold) < 2 or np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0  # undefined correlation (constant predictions) counts as no skill
    return float(fn(pred, gold)[0])


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    return _correlation(stats.pearsonr, pred, gold)


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    return _correlation(stats.spearmanr, pred, gold)


def compute_metrics(outputs: np.ndarray, gold: np.ndarray, num_labels: int) -> dict[str, float]:
    """Metrics from raw model outputs.

    Args:
        outputs: logits, shape (N, num_labels); for regression (num_labels == 1), predictions
            of shape (N, 1) or (N,).
        gold: class indices (N,) or scores (N,).

    Returns:
        ``{"accuracy", "f1"}`` for classification, ``{"pearson", "spearman"}`` for regression.
    """
    outputs = np.asarray(outputs)
    if num_labels == 1:
        pred = outputs.reshape(-1)
        return {"pearson": pearson(pred, gold), "spearman": spearman(pred, gold)}
    pred = outputs.argmax(axis=-1)
    return {"accuracy": accuracy(pred, gold), "f1": macro_f1(pred, gold, num_labels)}
