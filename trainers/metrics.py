"""Classification metrics on gathered predictions: accuracy, one-vs-rest ROC-AUC, confusion matrix.

Metrics are computed once on the predictions of the whole split, gathered from every worker,
never averaged per worker (an average of per-shard AUCs is not the AUC). scikit-learn does the
arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve
from sklearn.preprocessing import label_binarize


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _safe_auc(y_true: np.ndarray, score: np.ndarray, average: str | None = None) -> float:
    """ROC-AUC, or NaN when it is undefined (a class absent from ``y_true``)."""
    if len(np.unique(y_true)) < 2:
        return math.nan
    return float(roc_auc_score(y_true, score, average=average))


def classification_metrics(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, micro/macro one-vs-rest ROC-AUC and per-class AUC.

    Args:
        probs: Class probabilities, (N, K).
        labels: True classes, (N,).
        num_classes: K; classes absent from ``labels`` give NaN per-class AUC and are left out of macro.

    Returns:
        ``acc``, ``auc_micro``, ``auc_macro`` and ``auc_class_<k>`` for each class. For K = 2 the micro
        and macro AUC both equal the ordinary binary AUC of class 1.
    """
    labels = labels.astype(np.int64)
    out = {"acc": float((probs.argmax(axis=1) == labels).mean()) if len(labels) else math.nan}
    if num_classes == 2:
        auc = _safe_auc(labels, probs[:, 1])
        out.update(auc_micro=auc, auc_macro=auc, auc_class_0=auc, auc_class_1=auc)
        return out
    onehot = label_binarize(labels, classes=list(range(num_classes)))  # (N, K)
    per_class = [_safe_auc(onehot[:, k], probs[:, k]) for k in range(num_classes)]
    out["auc_micro"] = _safe_auc(onehot.ravel(), probs.ravel())
    finite = [a for a in per_class if not math.isnan(a)]
    out["auc_macro"] = float(np.mean(finite)) if finite else math.nan
    out.update({f"auc_class_{k}": a for k, a in enumerate(per_class)})
    return out


def confusion(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix (true class rows, predicted class columns), (K, K)."""
    return confusion_matrix(labels, probs.argmax(axis=1), labels=list(range(num_classes)))


def roc_curves(
    probs: np.ndarray, labels: np.ndarray, num_classes: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One-vs-rest ROC curves per class plus the micro-average: name -> (fpr, tpr)."""
    onehot = label_binarize(labels, classes=list(range(num_classes)))
    if num_classes == 2:
        onehot = np.stack([1 - onehot[:, 0], onehot[:, 0]], axis=1)
    curves = {}
    for k in range(num_classes):
        if 0 < onehot[:, k].sum() < len(labels):
            fpr, tpr, _ = roc_curve(onehot[:, k], probs[:, k])
            curves[str(k)] = (fpr, tpr)
    fpr, tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
    curves["micro"] = (fpr, tpr)
    return curves
