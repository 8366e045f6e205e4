import numpy as np
import pytest

from augrl.metrics import accuracy, compute_metrics, macro_f1, pearson, spearman


def test_classification_metrics_by_hand():
    gold = np.array([0, 0, 1, 1, 1])
    pred = np.array([0, 1, 1, 1, 0])
    assert accuracy(pred, gold) == pytest.approx(0.6)
    # class 0: tp=1 fp=1 fn=1 -> 0.5; class 1: tp=2 fp=1 fn=1 -> 2/3
    assert macro_f1(pred, gold, 2) == pytest.approx((0.5 + 2 / 3) / 2)
    logits = np.eye(2)[pred] * 3
    assert compute_metrics(logits, gold, 2) == pytest.approx({"accuracy": 0.6, "f1": (0.5 + 2 / 3) / 2})


def test_regression_metrics():
    gold = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson(gold * 2 + 1, gold) == pytest.approx(1.0)
    assert spearman(gold ** 3, gold) == pytest.approx(1.0)
    assert pearson(np.ones(4), gold) == 0.0  # constant predictions: no skill, not NaN
    assert set(compute_metrics(gold[:, None], gold, 1)) == {"pearson", "spearman"}
