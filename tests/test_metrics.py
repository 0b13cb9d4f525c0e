"""Metrics on known predictions: accuracy, micro/macro AUC, binary case, confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maetune.trainers.metrics import classification_metrics, confusion, roc_curves, softmax


def test_perfect_and_inverted_predictions() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[labels]
    m = classification_metrics(perfect, labels, 3)
    assert m["acc"] == 1.0 and m["auc_micro"] == 1.0 and m["auc_macro"] == 1.0
    inverted = 1 - perfect
    m = classification_metrics(inverted / inverted.sum(1, keepdims=True), labels, 3)
    assert m["acc"] == 0.0 and m["auc_micro"] == 0.0


def test_micro_auc_hand_case() -> None:
    # 2 samples, 3 classes. Flattened (label, score) pairs: positives 0.6, 0.5; negatives 0.3, 0.1, 0.4, 0.1.
    probs = np.array([[0.6, 0.3, 0.1], [0.4, 0.5, 0.1]])
    labels = np.array([0, 1])
    m = classification_metrics(probs, labels, 3)
    # every positive score beats every negative one except 0.5 vs nothing: all 8 pairs ordered -> 1.0
    assert m["auc_micro"] == pytest.approx(1.0)
    probs2 = np.array([[0.3, 0.6, 0.1], [0.4, 0.5, 0.1]])
    m2 = classification_metrics(probs2, labels, 3)
    # positives 0.3, 0.5; negatives 0.6, 0.1, 0.4, 0.1: 0.3 beats 2 of 4, 0.5 beats 3 of 4 -> 5/8
    assert m2["auc_micro"] == pytest.approx(5 / 8)
    assert m2["acc"] == pytest.approx(0.5)


def test_binary_case_uses_class_one_score() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 0])
    m = classification_metrics(probs, labels, 2)
    # class-1 scores: positives 0.8, 0.4; negatives 0.1, 0.7 -> pairs won 2 + 1 = 3 of 4
    assert m["auc_micro"] == m["auc_macro"] == pytest.approx(0.75)


def test_absent_class_gives_nan_per_class_not_crash() -> None:
    probs = softmax(np.random.default_rng(0).normal(size=(6, 3)))
    labels = np.array([0, 1, 0, 1, 0, 1])
    m = classification_metrics(probs, labels, 3)
    assert math.isnan(m["auc_class_2"])
    assert not math.isnan(m["auc_macro"])


def test_confusion_and_roc() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 1])
    assert confusion(probs, labels, 2).tolist() == [[1, 0], [1, 1]]
    curves = roc_curves(probs, labels, 2)
    assert set(curves) == {"0", "1", "micro"}
