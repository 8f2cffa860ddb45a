"""ROC AUC, accuracy, sensitivity, specificity against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from procto.errors import InputError
from procto.metrics import (
    accuracy,
    confusion_matrix,
    per_class_recall,
    per_class_sensitivity,
    roc_auc,
    sensitivity,
    specificity,
)

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    score = np.round(rng.random(60) + 0.3 * y, 1)  # rounded: tied scores
    pred = (score > 0.6).astype(int)
    assert roc_auc(y, score) == pytest.approx(sk.roc_auc_score(y, score), abs=1e-12)
    assert accuracy(y, pred) == pytest.approx(sk.accuracy_score(y, pred), abs=1e-12)
    assert sensitivity(y, pred) == pytest.approx(sk.recall_score(y, pred, pos_label=1), abs=1e-12)
    assert specificity(y, pred) == pytest.approx(sk.recall_score(y, pred, pos_label=0), abs=1e-12)


def test_string_labels_and_positive_class():
    rng = np.random.default_rng(7)
    y = rng.choice(["T2", "T3"], 40)
    score = rng.random(40)
    pred = np.where(score > 0.5, "T3", "T2")
    assert roc_auc(y, score) == pytest.approx(sk.roc_auc_score(y == "T3", score), abs=1e-12)
    assert roc_auc(y, 1 - score, positive="T2") == pytest.approx(sk.roc_auc_score(y == "T2", 1 - score), abs=1e-12)
    assert sensitivity(y, pred, positive="T3") == pytest.approx(sk.recall_score(y, pred, pos_label="T3"))
    assert specificity(y, pred, positive="T3") == pytest.approx(sk.recall_score(y, pred, pos_label="T2"))


def test_multiclass_per_class_sensitivity_and_confusion_matrix():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 80)
    pred = np.where(rng.random(80) < 0.6, y, rng.integers(0, 4, 80))
    want = sk.recall_score(y, pred, average=None, labels=[0, 1, 2, 3])
    got = per_class_sensitivity(y, pred)
    assert list(got) == [0, 1, 2, 3]
    np.testing.assert_allclose(list(got.values()), want, atol=1e-12)
    np.testing.assert_array_equal(confusion_matrix(y, pred), sk.confusion_matrix(y, pred))
    np.testing.assert_array_equal(confusion_matrix(y, pred, [2, 0]), sk.confusion_matrix(y, pred, labels=[2, 0]))
    assert per_class_sensitivity(y, pred, labels=[2, 1]) == {2: got[2], 1: got[1]}
    assert per_class_recall(y, pred) == got
    for c in range(4):  # one-vs-rest specificity from the confusion matrix
        cm = sk.confusion_matrix(y == c, pred == c)
        assert specificity(y, pred, positive=c) == pytest.approx(cm[0, 0] / cm[0].sum())


def test_undefined_rates_are_nan():
    assert np.isnan(sensitivity([0, 0, 0], [0, 1, 0]))
    assert np.isnan(specificity([1, 1], [1, 0]))
    assert np.isnan(per_class_sensitivity([0, 0], [0, 5])[5])


def test_bad_input_raises():
    with pytest.raises(InputError, match="two classes"):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="length mismatch"):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(InputError, match="1-D"):
        sensitivity(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(InputError, match="finite"):
        roc_auc([0, 1], [0.1, np.inf])
    with pytest.raises(InputError, match="empty"):
        accuracy([], [])
