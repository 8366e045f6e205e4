"""Evaluation metrics: accuracy and macro-F1 for classification, Pearson and Spearman for regression;
detection of planted candidates by a selector's keep scores (:func:`detection_auc`,
:func:`planted_in_lowest`)."""

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


# --------------------------------------------------------------------------- planted-candidate detection


def _detection_inputs(scores: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=float).reshape(-1)
    flags = np.asarray(flags).reshape(-1)
    if len(scores) != len(flags):
        raise ValueError(f"scores and flags differ in length: {len(scores)} and {len(flags)}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite numbers (no NaN or infinity)")
    if flags.dtype != bool and not np.isin(flags, (0, 1)).all():
        raise ValueError("flags must be booleans (True: planted)")
    return scores, flags.astype(bool)


def detection_auc(scores: np.ndarray, flags: np.ndarray) -> float:
    """How well a *low* keep-score flags planted rows: the ROC AUC of ``-scores`` for ``flags``.

    Equals the probability that a planted row drawn at random scores strictly lower than a
    clean row drawn at random, plus half the probability that they tie::

        AUC = (#{(p, c): s_p < s_c} + 0.5 * #{(p, c): s_p == s_c}) / (n_planted * n_clean)

    over every pair of a planted row ``p`` and a clean row ``c``. 1.0: every planted row scores
    below every clean row; 0.5: no better than chance (a constant scorer gets exactly 0.5);
    0.0: every planted row scores above every clean one. Computed from average ranks (the
    Mann-Whitney U statistic), O(N log N).

    Args:
        scores: (N,) keep scores (higher: more worth keeping), finite.
        flags: (N,) bool, True for planted rows (``CandidatePool.planted``).

    Raises:
        ValueError: lengths differ, a score is not finite, or ``flags`` are all one value
            (no planted or no clean row: the AUC is undefined).
    """
    scores, flags = _detection_inputs(scores, flags)
    n_planted = int(flags.sum())
    n_clean = len(flags) - n_planted
    if n_planted == 0 or n_clean == 0:
        raise ValueError("detection AUC needs at least one planted and one clean row; flags are all "
                         f"{'True' if n_clean == 0 else 'False'}")
    ranks = stats.rankdata(scores)  # ascending, ties get their average rank
    u_clean = ranks[~flags].sum() - n_clean * (n_clean + 1) / 2  # pairs where the clean row ranks above
    return float(u_clean / (n_planted * n_clean))


def planted_in_lowest(scores: np.ndarray, flags: np.ndarray, share: float = 1 / 3) -> float:
    """The fraction of all planted rows found among the lowest-scored ``share`` of the rows.

    As in DVRL's corrupted-sample discovery (Yoon et al., 2020): inspect the
    ``m = floor(share * N + 0.5)`` rows with the lowest keep scores and report
    ``(planted rows among them) / (all planted rows)``. A perfect scorer reaches
    ``min(1, m / n_planted)``; a random one, ``m / N`` (about ``share``) on average.

    Ties at the cut are shared out: if ``t`` rows tie at the ``m``-th lowest score and ``r`` of
    them fit in the ``m`` inspected rows, each of the tied planted rows counts ``r / t`` (the
    expected count under random tie-breaking), so a constant scorer gets exactly ``m / N``.

    Args:
        scores: (N,) keep scores (higher: more worth keeping), finite.
        flags: (N,) bool, True for planted rows.
        share: fraction of the rows inspected, in (0, 1].

    Raises:
        ValueError: lengths differ, a score is not finite, no row is planted, or ``share`` is
            outside (0, 1].
    """
    scores, flags = _detection_inputs(scores, flags)
    if not 0.0 < float(share) <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    n_planted = int(flags.sum())
    if n_planted == 0:
        raise ValueError("planted_in_lowest needs at least one planted row; flags are all False")
    m = int(np.floor(float(share) * len(scores) + 0.5))
    if m == 0:
        return 0.0
    cut = np.sort(scores)[m - 1]
    below = scores < cut
    tied = scores == cut
    room = m - int(below.sum())
    found = float((below & flags).sum()) + (room / int(tied.sum())) * float((tied & flags).sum())
    return found / n_planted
