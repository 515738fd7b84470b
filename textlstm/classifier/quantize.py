"""Dynamic int8 quantization of a trained network for CPU inference: an opt-in speed lever.

The weights of `nn.LSTM` and `nn.Linear` are stored as int8 and activations are quantized on
the fly; the embedding stays fp32 (a row lookup has no matrix product to speed up). Measured
here (bench/levers.py): 1.25x the fp32 `Classifier.predict` on AG News texts with the reference
model and 1.08x on the much shorter TREC questions, accuracy -0.1 and +0.4 points; the whole
worker pipeline gained only 1.02-1.05x (bench/pipeline.py, README "Performance"). Accuracy must
be checked per model, so it is off unless asked for.

`torch.ao.quantization` is deprecated upstream. When it is missing or fails on a network, the
fp32 network is kept and the reason returned: a worker then runs as before instead of failing.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def quantize_int8(model: nn.Module) -> tuple[nn.Module, str | None]:
    """(int8 copy of `model`, None), or (`model` itself, why not) if it cannot be quantized."""
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:
        return model, f"torch {torch.__version__} has no torch.ao.quantization ({exc})"
    try:
        with warnings.catch_warnings():
            # It warns of its own deprecation on every call; the fallback below is the answer.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            quantized = quantize_dynamic(
                copy.deepcopy(model).cpu().eval(), {nn.LSTM, nn.Linear}, dtype=torch.qint8
            )
            for name in ("head", "ngram_head"):
                head = getattr(model, name, None)
                if isinstance(head, nn.Linear):
                    # The output layers stay fp32: a joint one reads the LSTM's features and
                    # the n-gram bag's, whose ranges differ, and one activation scale for both
                    # cost more than int8 saves on a (classes × features) product.
                    setattr(quantized, name, copy.deepcopy(head).cpu())
    except Exception as exc:  # noqa: BLE001 - any failure keeps the fp32 network
        return model, f"int8 quantization failed: {type(exc).__name__}: {exc}"
    return quantized.eval(), None
