"""Classification metrics and calibration error, in numpy: pure functions of labels and probs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-1 confidence: the bin-weighted gap between confidence and accuracy."""
    if len(y_true) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; confidence is never 0 with softmax.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix and ECE."""
    y = np.asarray(y_true, dtype=np.int64)
    pred = probs.argmax(axis=1)
    cm = confusion_matrix(y, pred, len(labels))
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    support = cm.sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0  # macro-F1 over classes that occur in this data
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return {
        "examples": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "ece": expected_calibration_error(probs, y),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(labels), "matrix": cm.tolist()},
    }
