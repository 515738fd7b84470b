import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from textlstm.classifier.calibration import fit_temperature
from textlstm.training.metrics import classification_report, expected_calibration_error


def test_report_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 500)
    probs = rng.dirichlet(np.ones(4), 500)
    probs[np.arange(250), y[:250]] += 1.0  # half the rows lean to the truth
    probs /= probs.sum(1, keepdims=True)
    pred = probs.argmax(1)
    report = classification_report(y, probs, ["a", "b", "c", "d"])
    assert report["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert report["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    p, r, f, s = precision_recall_fscore_support(y, pred)
    assert [report["per_class"][k]["recall"] for k in "abcd"] == pytest.approx(r)
    assert [report["per_class"][k]["precision"] for k in "abcd"] == pytest.approx(p)
    assert report["confusion_matrix"]["matrix"] == confusion_matrix(y, pred).tolist()


def test_ece_of_known_cases() -> None:
    # always 90% confident, right 90% of the time: calibrated
    probs = np.tile([0.9, 0.1], (100, 1))
    y = np.array([0] * 90 + [1] * 10)
    assert expected_calibration_error(probs, y) == pytest.approx(0.0, abs=1e-9)
    # always 90% confident, right half the time: ECE 0.4
    y = np.array([0] * 50 + [1] * 50)
    assert expected_calibration_error(probs, y) == pytest.approx(0.4)


def test_temperature_scaling_lowers_ece_on_held_out_data() -> None:
    """Overconfident logits (a true model's logits × 4): T is fitted on one half and must
    lower ECE on the other half without changing any prediction."""
    gen = torch.Generator().manual_seed(0)
    n, c = 4000, 5
    true_logits = torch.randn(n, c, generator=gen) * 1.5
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=gen).squeeze(1)
    logits = true_logits * 4
    fit, held = slice(0, n // 2), slice(n // 2, n)
    t = fit_temperature(logits[fit], labels[fit])
    assert 3.0 < t < 5.0
    before = expected_calibration_error(logits[held].softmax(-1).numpy(), labels[held].numpy())
    after = expected_calibration_error((logits[held] / t).softmax(-1).numpy(), labels[held].numpy())
    assert after < before / 3
    assert torch.equal((logits / t).argmax(-1), logits.argmax(-1))
