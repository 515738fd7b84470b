"""PNG plots saved beside metrics.json: the training curve and the confusion matrix."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any


def _figure_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def training_curve_png(history: Sequence[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    from matplotlib import pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_loss.legend()
    ax_score.plot(epochs, [h["val_accuracy"] for h in history], marker="o", label="accuracy")
    ax_score.plot(epochs, [h["val_macro_f1"] for h in history], marker="o", label="macro-F1")
    best = [h["epoch"] for h in history if h.get("best")]
    if best:
        ax_score.axvline(best[-1], color="grey", linestyle="--", label="best epoch")
    ax_score.set(title="validation", xlabel="epoch", ylim=(0, 1))
    ax_score.legend()
    try:
        return _figure_bytes(fig)
    finally:
        plt.close(fig)


def confusion_matrix_png(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (validation)")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            color = "white" if value > peak / 2 else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=8)
    try:
        return _figure_bytes(fig)
    finally:
        plt.close(fig)
