"""Tests of runner.metrics against values worked out by hand in each test (fractions written out).

Degenerate-case choices under test: precision is None when nothing is predicted positive, F1 is
2tp / (2tp + fp + fn) (0 when positives exist but none is found, None only when there are no positives and
none predicted), ROC AUC / PR AUC are None when undefined, empty-vs-empty masks score dice = iou = 1.
Every result goes through ``check_json`` so no NaN/inf or numpy type ever escapes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from runner.metrics import (
    anomaly_metrics,
    binary_metrics,
    binary_report,
    bootstrap_ci,
    json_safe,
    multiclass_metrics,
    pr_auc,
    roc_auc,
    segmentation_metrics,
    threshold_from_negatives,
    tune_threshold,
    with_confidence_intervals,
)


def check_json(result: dict) -> dict:
    """Result is flat, JSON-serialisable without NaN, and holds only Python ints/floats/None (+ matrix)."""
    json.dumps(result, allow_nan=False)
    for key, value in result.items():
        assert key == key.lower() and " " not in key, key
        if key == "confusion_matrix":
            assert all(type(v) is int for row in value for v in row)
        else:
            assert value is None or type(value) in (int, float), (key, type(value))
            assert value is None or math.isfinite(value), key
    return result


# ---------------------------------------------------------------------------------------------- binary

# 10 samples, threshold 0.5 -> tp = 3, fn = 1 (the 0.3 positive), fp = 1 (the 0.6 negative), tn = 5
Y10 = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
S10 = [0.9, 0.8, 0.7, 0.3, 0.6, 0.4, 0.2, 0.1, 0.15, 0.05]


def test_binary_metrics_by_hand():
    r = check_json(binary_metrics(Y10, S10))
    assert r["confusion_matrix"] == [[5, 1], [1, 3]]
    assert r["accuracy"] == pytest.approx(8 / 10)
    assert r["precision"] == pytest.approx(3 / 4)
    assert r["recall"] == pytest.approx(3 / 4)
    assert r["sensitivity"] == r["recall"]
    assert r["specificity"] == pytest.approx(5 / 6)
    assert r["f1"] == pytest.approx(6 / 8)  # 2tp / (2tp + fp + fn)
    # ROC AUC: of the 4 x 6 pairs only 0.3 loses to 0.6 and 0.4 -> 22 / 24
    assert r["roc_auc"] == pytest.approx(22 / 24)
    # AP: positives at ranks 1, 2, 3, 6 -> precisions 1, 1, 1, 4/6, each recall step 1/4
    assert r["pr_auc"] == pytest.approx((1 + 1 + 1 + 4 / 6) / 4)
    assert (r["threshold"], r["n"], r["n_positive"]) == (0.5, 10, 4)
    assert set(r) == {
        "accuracy", "precision", "recall", "sensitivity", "specificity", "f1", "roc_auc", "pr_auc",
        "threshold", "n", "n_positive", "confusion_matrix",
    }  # fmt: skip


def test_binary_metrics_other_threshold_and_boundary_is_positive():
    # threshold 0.7: the 0.7 positive is predicted positive (score >= threshold) -> tp 3, fp 0
    r = check_json(binary_metrics(Y10, S10, threshold=0.7))
    assert r["confusion_matrix"] == [[6, 0], [1, 3]]
    assert r["precision"] == 1.0
    assert r["recall"] == pytest.approx(3 / 4)
    assert r["threshold"] == 0.7


def test_auc_with_ties_by_hand():
    # pos 0.5 ties neg 0.5 (counts 1/2) and beats 0.2; pos 0.8 beats both -> 3.5 / 4
    y, s = [1, 0, 1, 0], [0.5, 0.5, 0.8, 0.2]
    assert roc_auc(y, s) == pytest.approx(7 / 8)
    # PR points: >= 0.8 -> P 1, R 1/2; >= 0.5 (tie group) -> P 2/3, R 1
    assert pr_auc(y, s) == pytest.approx(1 / 2 * 1 + 1 / 2 * 2 / 3)


def test_auc_matches_sklearn_on_random_data_with_ties():
    """Cross-check of the in-house sorted-pass AUC/AP (used for speed) on top of the hand values."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    for _ in range(50):
        y = rng.integers(0, 2, 40)
        s = np.round(rng.random(40), 1)
        if y.min() == y.max():
            continue
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert pr_auc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_binary_no_positive_predictions():
    r = check_json(binary_metrics([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4]))
    assert r["confusion_matrix"] == [[2, 0], [2, 0]]
    assert r["precision"] is None  # nothing predicted positive
    assert r["recall"] == 0.0
    assert r["f1"] == 0.0  # positives exist and none was found
    assert r["specificity"] == 1.0
    assert r["accuracy"] == pytest.approx(1 / 2)
    assert r["roc_auc"] == pytest.approx(1 / 4)  # only 0.3 > 0.2 of the 4 pairs


def test_binary_single_class_in_y_true():
    r = check_json(binary_metrics([0, 0, 0], [0.1, 0.6, 0.3]))
    assert r["roc_auc"] is None
    assert r["pr_auc"] is None
    assert r["recall"] is None
    assert r["precision"] == 0.0  # 1 predicted positive, wrong
    assert r["f1"] == 0.0
    assert r["specificity"] == pytest.approx(2 / 3)
    r = check_json(binary_metrics([0, 0], [0.1, 0.2]))  # no positives, none predicted
    assert r["f1"] is None and r["precision"] is None and r["recall"] is None
    assert r["accuracy"] == 1.0 and r["specificity"] == 1.0
    r = check_json(binary_metrics([1, 1], [0.9, 0.2]))  # only positives
    assert r["roc_auc"] is None
    assert r["specificity"] is None
    assert r["pr_auc"] == 1.0


def test_binary_perfect_and_worst():
    y = [0, 0, 1, 1]
    r = check_json(binary_metrics(y, [0.1, 0.2, 0.8, 0.9]))
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc"):
        assert r[key] == 1.0, key
    r = check_json(binary_metrics(y, [0.9, 0.8, 0.2, 0.1]))
    for key in ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc"):
        assert r[key] == 0.0, key
    # AP: order N, N, P, P -> precisions 1/3 and 2/4 at recall 1/2 and 1
    assert r["pr_auc"] == pytest.approx(1 / 2 * 1 / 3 + 1 / 2 * 2 / 4)


def test_binary_empty_and_bad_input():
    r = check_json(binary_metrics([], []))
    assert r["n"] == 0 and r["accuracy"] is None and r["roc_auc"] is None
    assert r["confusion_matrix"] == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="0/1"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="2 labels but 3 scores"):
        binary_metrics([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([0, 1], [0.1, float("nan")])


def test_binary_accepts_numpy_and_bool_inputs():
    r = check_json(binary_metrics(np.array(Y10, dtype=bool), np.array(S10, dtype=np.float32)))
    assert r["confusion_matrix"] == [[5, 1], [1, 3]]


# ------------------------------------------------------------------------------------------ thresholds


def test_tune_threshold_f1_by_hand():
    # descending: .8P .6P .4N .35P .3N .1N; F1 per cut = 2tp / (tp + fp + 3):
    # 2/4, 4/5, 4/6, 6/7 (best: cut between .35 and .3), 6/8, 6/9
    y, s = [0, 0, 1, 0, 1, 1], [0.1, 0.3, 0.35, 0.4, 0.6, 0.8]
    assert tune_threshold(y, s, "f1") == pytest.approx((0.35 + 0.3) / 2)
    # Youden J per cut: 1/3, 2/3, 1/3, 2/3, 1/3, 0 -> tie, the higher threshold wins
    assert tune_threshold(y, s, "youden") == pytest.approx((0.6 + 0.4) / 2)


def test_tune_threshold_f1_and_youden_differ():
    # 2 positives among 13: .9P, .8N .7N .6N, .5P, then 8 negatives below
    s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05]
    y = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    # F1: cut after .9 -> 2/3; after .5 -> 4/7. Youden: after .9 -> 1/2; after .5 -> 1 - 3/11
    assert tune_threshold(y, s, "f1") == pytest.approx((0.9 + 0.8) / 2)
    assert tune_threshold(y, s, "youden") == pytest.approx((0.5 + 0.4) / 2)


def test_tune_threshold_degenerate_and_unknown():
    assert tune_threshold([1, 1, 1], [0.2, 0.3, 0.9]) == 0.5
    assert tune_threshold([0, 0], [0.2, 0.3], "youden") == 0.5
    assert tune_threshold([], []) == 0.5
    with pytest.raises(ValueError, match=r"'auc'.*f1, youden"):
        tune_threshold([0, 1], [0.1, 0.9], "auc")


def test_tune_threshold_all_positive_when_best():
    # every cut but "all positive" misses a positive; scores are uninformative -> lowest score
    assert tune_threshold([1, 1, 0, 1], [0.2, 0.3, 0.4, 0.5], "f1") == pytest.approx(0.2)


def test_binary_report_at_half_and_tuned():
    # tuned threshold on this validation set is 0.85 (see test above)
    y_val = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    s_val = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05]
    y_test, s_test = [1, 1, 0, 0], [0.9, 0.6, 0.7, 0.1]
    r = check_json(binary_report(y_val, s_val, y_test, s_test))
    # at 0.5: predicted 1, 1, 1, 0 -> tp 2, fp 1, fn 0, tn 1
    assert r["threshold"] == 0.5
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == 1.0
    assert r["f1"] == pytest.approx(4 / 5)
    assert r["confusion_matrix"] == [[1, 1], [0, 2]]
    # at 0.85: predicted 1, 0, 0, 0 -> tp 1, fp 0, fn 1, tn 2
    assert r["threshold_tuned"] == pytest.approx(0.85)
    assert r["precision_tuned"] == 1.0
    assert r["recall_tuned"] == r["sensitivity_tuned"] == pytest.approx(1 / 2)
    assert r["f1_tuned"] == pytest.approx(2 / 3)
    assert r["specificity_tuned"] == 1.0
    assert r["accuracy_tuned"] == r["accuracy"] == pytest.approx(3 / 4)
    assert r["roc_auc"] == pytest.approx(3 / 4)  # .9 beats both negatives, .6 beats .1 only
    assert "roc_auc_tuned" not in r and "confusion_matrix_tuned" not in r


# ------------------------------------------------------------------------------------------ multi-class


def test_multiclass_by_hand():
    classes = ["normal", "covid", "pneumonia"]
    y = [0, 0, 0, 1, 1, 2, 2, 2, 2, 0]
    pred = [0, 0, 1, 1, 2, 2, 2, 2, 0, 2]
    probs = np.full((10, 3), 0.1)
    probs[np.arange(10), pred] = 0.8
    r = check_json(multiclass_metrics(y, probs, classes))
    assert r["confusion_matrix"] == [[2, 1, 1], [0, 1, 1], [1, 0, 3]]
    assert r["accuracy"] == pytest.approx(6 / 10)
    # columns sum to 3, 2, 5 predicted; rows to 4, 2, 4 true
    precision, recall, f1 = [2 / 3, 1 / 2, 3 / 5], [2 / 4, 1 / 2, 3 / 4], [4 / 7, 2 / 4, 6 / 9]
    support = [4, 2, 4]
    for c, name in enumerate(classes):
        assert r[f"precision_{name}"] == pytest.approx(precision[c])
        assert r[f"recall_{name}"] == pytest.approx(recall[c])
        assert r[f"f1_{name}"] == pytest.approx(f1[c])
        assert r[f"support_{name}"] == support[c]
    assert r["precision_macro"] == pytest.approx(sum(precision) / 3)
    assert r["recall_macro"] == pytest.approx(sum(recall) / 3)
    assert r["f1_macro"] == pytest.approx(sum(f1) / 3)
    assert r["precision_weighted"] == pytest.approx((4 * 2 / 3 + 2 * 1 / 2 + 4 * 3 / 5) / 10)
    assert r["recall_weighted"] == pytest.approx(6 / 10)  # weighted recall == accuracy
    assert r["f1_weighted"] == pytest.approx((4 * 4 / 7 + 2 * 2 / 4 + 4 * 6 / 9) / 10)
    assert r["n"] == 10


def test_multiclass_auc_and_zero_support_class():
    classes = ["normal", "covid", "pneumonia", "other"]  # 'other' never occurs and is never predicted
    y = [0, 1, 2, 2]
    probs = [
        [0.6, 0.3, 0.1, 0.0],
        [0.2, 0.5, 0.3, 0.0],
        [0.1, 0.2, 0.7, 0.0],
        [0.5, 0.25, 0.25, 0.0],
    ]
    r = check_json(multiclass_metrics(y, probs, classes))
    # normal: 0.6 vs 0.2, 0.1, 0.5 -> 1; covid: 0.5 vs 0.3, 0.2, 0.25 -> 1;
    # pneumonia: 0.7 beats 0.1 and 0.3, 0.25 beats 0.1 only -> 3/4
    assert r["roc_auc_normal"] == 1.0
    assert r["roc_auc_covid"] == 1.0
    assert r["roc_auc_pneumonia"] == pytest.approx(3 / 4)
    assert r["roc_auc_other"] is None
    assert r["roc_auc_ovr"] == pytest.approx((1 + 1 + 3 / 4) / 3)  # over the classes present
    assert r["support_other"] == 0
    assert r["precision_other"] is None and r["recall_other"] is None and r["f1_other"] is None
    # predictions 0, 1, 2, 0: normal p 1/2 r 1; covid 1, 1; pneumonia 1, 1/2; 'other' left out of averages
    assert r["precision_macro"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert r["recall_macro"] == pytest.approx((1 + 1 + 1 / 2) / 3)


def test_multiclass_predicted_class_with_zero_support():
    # classes a, b, c; true 0, 0, 1; predicted 0, 2, 1 -> c predicted once but never true
    probs = [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]]
    r = check_json(multiclass_metrics([0, 0, 1], probs, ["a", "b", "c"]))
    assert r["confusion_matrix"] == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]
    assert (r["precision_c"], r["recall_c"], r["f1_c"]) == (0.0, None, 0.0)
    assert (r["precision_a"], r["recall_a"]) == (1.0, pytest.approx(1 / 2))
    assert r["f1_a"] == pytest.approx(2 / 3)
    assert r["precision_macro"] == pytest.approx((1 + 1 + 0) / 3)
    assert r["recall_macro"] == pytest.approx((1 / 2 + 1) / 2)  # c's undefined recall is skipped
    assert r["f1_macro"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert r["precision_weighted"] == pytest.approx((2 * 1 + 1 * 1) / 3)
    assert r["recall_weighted"] == pytest.approx((2 * 1 / 2 + 1 * 1) / 3)
    assert r["f1_weighted"] == pytest.approx((2 * 2 / 3 + 1 * 1) / 3)
    assert r["accuracy"] == pytest.approx(2 / 3)
    assert r["roc_auc_c"] is None


def test_multiclass_perfect_worst_single_class():
    probs = np.eye(3)[[0, 1, 2, 2]]
    r = check_json(multiclass_metrics([0, 1, 2, 2], probs, ["a", "b", "c"]))
    assert r["accuracy"] == r["f1_macro"] == r["roc_auc_ovr"] == 1.0
    r = check_json(multiclass_metrics([1, 2, 0, 0], probs, ["a", "b", "c"]))
    assert r["accuracy"] == r["f1_macro"] == r["recall_weighted"] == 0.0
    r = check_json(multiclass_metrics([1, 1], [[0.2, 0.8], [0.7, 0.3]], ["a", "b"]))
    assert r["roc_auc_ovr"] is None and r["roc_auc_a"] is None and r["roc_auc_b"] is None
    assert r["accuracy"] == pytest.approx(1 / 2)


def test_multiclass_class_keys_and_errors():
    r = check_json(multiclass_metrics([0, 1, 2], np.eye(3), ["Normal", "COVID-19", "Viral Pneumonia"]))
    assert {"recall_normal", "recall_covid_19", "recall_viral_pneumonia"} <= set(r)
    with pytest.raises(ValueError, match="distinct"):
        multiclass_metrics([0, 1], np.eye(2), ["a b", "a-b"])
    with pytest.raises(ValueError, match="shape"):
        multiclass_metrics([0, 1], np.eye(2), ["a", "b", "c"])
    with pytest.raises(ValueError, match="class indices"):
        multiclass_metrics([0, 3], np.eye(2), ["a", "b"])


# --------------------------------------------------------------------------------------------- anomaly


def test_anomaly_metrics_by_hand():
    y = [0, 0, 0, 0, 1, 1, 1]
    s = [1.0, 2.0, 3.0, 10.0, 4.0, 8.0, 12.0]
    r = check_json(anomaly_metrics(y, s, threshold=5.0))
    # >= 5: 10 (normal), 8, 12 -> tp 2, fp 1, fn 1, tn 3
    assert r["confusion_matrix"] == [[3, 1], [1, 2]]
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["specificity"] == pytest.approx(3 / 4)
    assert r["accuracy"] == pytest.approx(5 / 7)
    assert r["threshold"] == 5.0
    # AUC: 4 beats 3 normals, 8 beats 3, 12 beats 4 -> 10 / 12
    assert r["roc_auc"] == pytest.approx(10 / 12)
    # AP: order 12P 10N 8P 4P -> precisions 1, 2/3, 3/4
    assert r["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert r["score_mean_normal"] == pytest.approx(4.0)
    assert r["score_median_normal"] == pytest.approx(2.5)
    assert r["score_std_normal"] == pytest.approx(math.sqrt((9 + 4 + 1 + 36) / 4))
    assert r["score_mean_positive"] == pytest.approx(8.0)
    assert r["score_median_positive"] == pytest.approx(8.0)
    assert r["score_std_positive"] == pytest.approx(math.sqrt(32 / 3))


def test_anomaly_metrics_only_normals():
    r = check_json(anomaly_metrics([0, 0, 0], [0.1, 0.5, 0.9], threshold=0.8))
    assert r["roc_auc"] is None and r["recall"] is None
    assert r["score_mean_positive"] is None and r["score_std_positive"] is None
    assert r["score_median_normal"] == pytest.approx(0.5)
    assert r["specificity"] == pytest.approx(2 / 3)


def test_threshold_from_negatives():
    assert threshold_from_negatives([1, 2, 3, 4, 5], 50) == 3.0
    assert threshold_from_negatives([5, 1, 4, 2, 3], 100) == 5.0
    assert threshold_from_negatives(np.arange(1, 22), 95) == pytest.approx(20.0)  # index 0.95 * 20 = 19
    assert threshold_from_negatives([0.0, 10.0], 90) == pytest.approx(9.0)  # linear interpolation
    assert threshold_from_negatives(np.arange(1, 22)) == pytest.approx(20.0)  # default 95
    for bad in (0, -5, 100.5):
        with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\]"):
            threshold_from_negatives([1, 2, 3], bad)
    with pytest.raises(ValueError, match="at least one"):
        threshold_from_negatives([], 95)


# ---------------------------------------------------------------------------------------- segmentation


def _seg_example():
    true = np.array(
        [
            [[1, 1], [0, 0]],  # pred [[1, 0], [1, 0]]: inter 1 -> dice 2/4, iou 1/3
            [[0, 0], [0, 0]],  # predicted empty -> 1, 1
            [[0, 0], [0, 0]],  # one false pixel -> 0, 0
            [[1, 1], [1, 1]],  # all right -> 1, 1
        ]
    )
    probs = np.array(
        [
            [[0.9, 0.2], [0.6, 0.1]],
            [[0.1, 0.2], [0.3, 0.4]],
            [[0.7, 0.0], [0.0, 0.0]],
            [[0.8, 0.8], [0.8, 0.8]],
        ]
    )
    return true, probs


def test_segmentation_by_hand():
    true, probs = _seg_example()
    r = check_json(segmentation_metrics(true, probs))
    assert r["dice"] == pytest.approx((1 / 2 + 1 + 0 + 1) / 4)
    assert r["iou"] == pytest.approx((1 / 3 + 1 + 0 + 1) / 4)
    # pooled pixels: tp 1 + 4 = 5, predicted 2 + 1 + 4 = 7, true 2 + 4 = 6
    assert r["pixel_precision"] == pytest.approx(5 / 7)
    assert r["pixel_recall"] == pytest.approx(5 / 6)
    assert r["pixel_f1"] == pytest.approx(10 / 13)
    # images: has mask T F F T, predicted T F T T -> tp 2, fp 1, fn 0, tn 1
    assert r["detection_precision"] == pytest.approx(2 / 3)
    assert r["detection_recall"] == 1.0
    assert r["detection_f1"] == pytest.approx(4 / 5)
    assert r["detection_specificity"] == pytest.approx(1 / 2)
    assert (r["n"], r["n_with_mask"]) == (4, 2)


def test_segmentation_channel_axis_bool_and_0_255_masks_agree():
    true, probs = _seg_example()
    expected = segmentation_metrics(true, probs)
    assert check_json(segmentation_metrics(true[..., None].astype(bool), probs[..., None])) == expected
    assert check_json(segmentation_metrics((true * 255).astype(np.uint8), probs)) == expected


def test_segmentation_threshold_boundary():
    true = np.array([[[1, 0]]])
    r = check_json(segmentation_metrics(true, np.array([[[0.5, 0.49]]])))
    assert r["dice"] == 1.0  # 0.5 >= threshold counts as foreground
    r = check_json(segmentation_metrics(true, np.array([[[0.5, 0.49]]]), threshold=0.4))
    assert r["dice"] == pytest.approx(2 / 3)


def test_segmentation_all_empty_and_worst():
    empty = np.zeros((3, 4, 4))
    r = check_json(segmentation_metrics(empty, empty))
    assert r["dice"] == 1.0 and r["iou"] == 1.0
    assert r["pixel_precision"] is None and r["pixel_recall"] is None and r["pixel_f1"] is None
    assert r["detection_precision"] is None and r["detection_recall"] is None and r["detection_f1"] is None
    assert r["detection_specificity"] == 1.0
    assert r["n_with_mask"] == 0
    r = check_json(segmentation_metrics(np.ones((2, 3, 3)), np.zeros((2, 3, 3))))
    assert r["dice"] == 0.0 and r["iou"] == 0.0
    assert r["pixel_recall"] == 0.0 and r["pixel_precision"] is None and r["pixel_f1"] == 0.0
    assert r["detection_recall"] == 0.0 and r["detection_precision"] is None


def test_segmentation_bad_shapes():
    with pytest.raises(ValueError, match="masks must both be"):
        segmentation_metrics(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="masks must both be"):
        segmentation_metrics(np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 3)))


# ------------------------------------------------------------------------------------------- bootstrap


def _scored(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, rng.normal(size=n) + y  # AUC around 0.76


def test_bootstrap_contains_estimate_and_is_seeded():
    y, s = _scored(400)
    low, high = bootstrap_ci(roc_auc, y, s, n_resamples=300)
    assert low < roc_auc(y, s) < high
    assert bootstrap_ci(roc_auc, y, s, n_resamples=300) == (low, high)
    assert bootstrap_ci(roc_auc, y, s, n_resamples=300, seed=1) != (low, high)
    narrower = bootstrap_ci(roc_auc, y, s, n_resamples=300, confidence=0.5)
    assert low < narrower[0] < narrower[1] < high


def test_bootstrap_narrows_with_more_data():
    small = bootstrap_ci(roc_auc, *_scored(200), n_resamples=300)
    large = bootstrap_ci(roc_auc, *_scored(2000), n_resamples=300)
    assert large[1] - large[0] < (small[1] - small[0]) / 2  # width ~ 1/sqrt(n): about 1/3 here


def test_bootstrap_constant_and_paired_indices():
    assert bootstrap_ci(lambda a: float(a.mean()), [5, 5, 5], n_resamples=50) == (5.0, 5.0)
    # the same indices are used for every array: a - b is always 0
    assert bootstrap_ci(lambda a, b: float(np.max(np.abs(a - b))), np.arange(9), np.arange(9)) == (0.0, 0.0)


def test_bootstrap_skips_undefined_resamples():
    data = np.arange(10)
    # defined only when the first drawn item is 0 (~10%) -> fewer than half -> no interval
    assert bootstrap_ci(lambda a: float(a.mean()) if a[0] == 0 else None, data) == (None, None)
    # NaN counts as undefined too
    assert bootstrap_ci(lambda a: float("nan"), data, n_resamples=20) == (None, None)
    # defined ~90% -> an interval from the defined ones
    low, high = bootstrap_ci(lambda a: float(a.mean()) if a[0] != 0 else None, data)
    assert 0 <= low < 4.5 < high <= 9
    assert bootstrap_ci(roc_auc, [0, 0, 0], [0.1, 0.2, 0.3]) == (None, None)  # one class only
    assert bootstrap_ci(roc_auc, [], []) == (None, None)


def test_bootstrap_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        bootstrap_ci(roc_auc, [0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(roc_auc, [0, 1], [0.1, 0.2], confidence=95)


def test_with_confidence_intervals():
    metrics = binary_metrics(Y10, S10)
    ci = {"roc_auc": (np.float64(0.8), 0.95), "f1": (None, None)}
    out = check_json(with_confidence_intervals(metrics, ci))
    assert out["roc_auc_ci_low"] == 0.8 and type(out["roc_auc_ci_low"]) is float
    assert out["roc_auc_ci_high"] == 0.95
    assert out["f1_ci_low"] is None and out["f1_ci_high"] is None
    assert out["roc_auc"] == metrics["roc_auc"] and "roc_auc_ci_low" not in metrics  # input untouched
    with pytest.raises(ValueError, match="rocauc"):
        with_confidence_intervals(metrics, {"rocauc": (0.1, 0.2)})


# ------------------------------------------------------------------------------------------- json_safe


def test_json_safe():
    value = {
        "a": np.float32(0.5),
        "b": np.int64(3),
        "c": float("nan"),
        "d": np.inf,
        "e": np.array([[1, 2], [3, 4]]),
        "f": (np.float64(-np.inf), 1.5),
        "g": np.bool_(True),
        "h": None,
    }
    out = json_safe(value)
    assert out == {"a": 0.5, "b": 3, "c": None, "d": None, "e": [[1, 2], [3, 4]], "f": [None, 1.5],
                   "g": True, "h": None}  # fmt: skip
    assert type(out["b"]) is int and type(out["a"]) is float and type(out["g"]) is bool
    assert type(out["e"][0][0]) is int
    json.dumps(out, allow_nan=False)
    with pytest.raises(TypeError, match="object"):
        json_safe(object())


def test_empty_inputs_give_none_not_errors():
    r = check_json(multiclass_metrics([], np.zeros((0, 2)), ["a", "b"]))
    assert r["accuracy"] is None and r["f1_macro"] is None and r["confusion_matrix"] == [[0, 0], [0, 0]]
    r = check_json(segmentation_metrics(np.zeros((0, 2, 2)), np.zeros((0, 2, 2))))
    assert r["dice"] is None and r["n"] == 0
