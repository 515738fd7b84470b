"""int8 dynamic quantization (TEXTLSTM_WORKER_QUANTIZE=int8): the quantized network predicts
what the fp32 one does, on the default architecture (bidirectional LSTM, max pooling, embedding
skip), and any failure keeps the fp32 network with the reason instead of raising."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch

from tests.fixtures.models import make_examples
from textlstm.classifier.predictor import Classifier
from textlstm.classifier.quantize import quantize_int8
from textlstm.serving.models import make_loader

TEXTS = [ex.text for ex in make_examples(20, seed=9)]


def lstm_type(model: torch.nn.Module) -> str:
    """Module of the network's (first) LSTM: a windowed network holds one per layer/direction."""
    lstm = model.lstm  # type: ignore[union-attr]
    layers = getattr(lstm, "forward_layers", None)
    return type(layers[0] if layers is not None else lstm).__module__


def test_int8_network_agrees_with_fp32_and_leaves_the_original_alone(
    tiny_classifier: Classifier,
) -> None:
    quantized, why = quantize_int8(tiny_classifier.model)
    assert why is None
    assert "quantized" in lstm_type(quantized)
    assert "quantized" not in lstm_type(tiny_classifier.model)  # a copy was quantized
    fp32 = tiny_classifier.predict(TEXTS)
    clone = copy.copy(tiny_classifier)
    clone.model = quantized
    int8 = clone.predict(TEXTS)
    agree = sum(a.label == b.label for a, b in zip(fp32, int8, strict=True)) / len(TEXTS)
    assert agree >= 0.95
    worst = max(
        abs(a.probabilities[k] - b.probabilities[k])
        for a, b in zip(fp32, int8, strict=True)
        for k in a.probabilities
    )
    assert 0 < worst < 0.05  # int8 differs a little, never much


def test_a_failing_quantizer_keeps_fp32_with_the_reason(
    tiny_classifier: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no qengine for this CPU")

    monkeypatch.setattr(torch.ao.quantization, "quantize_dynamic", broken)
    model, why = quantize_int8(tiny_classifier.model)
    assert model is tiny_classifier.model
    assert why == "int8 quantization failed: RuntimeError: no qengine for this CPU"


def test_worker_loader_quantizes_on_cpu_only(
    tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert "quantized" not in lstm_type(make_loader("none")(tiny_bundle, "cpu").model)
    with caplog.at_level(logging.INFO, logger="textlstm"):
        loaded = make_loader("int8")(tiny_bundle, "cpu")
    assert "quantized" in lstm_type(loaded.model)
    assert "quantized to int8" in caplog.text
    assert [p.label for p in loaded.predict(TEXTS[:5])]  # it serves
