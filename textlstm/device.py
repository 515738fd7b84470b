"""Turn a --device option into a torch.device, with one clear warning on fallback."""

from __future__ import annotations

import logging
import re

import torch

from textlstm.errors import ConfigError

log = logging.getLogger(__name__)
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto` → cuda:0 if available else cpu; `cuda[:N]` must exist; `cpu` always works."""
    spec = spec.strip().lower()
    if not _DEVICE_RE.match(spec):
        raise ConfigError(f"invalid device {spec!r}: use auto, cpu, cuda or cuda:N")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if spec == "auto":
            return torch.device("cpu")
        raise ConfigError(f"device {spec!r} requested but CUDA is not available on this machine")
    if spec == "auto":
        return torch.device("cuda:0")
    device = torch.device(spec)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {spec!r} requested but only {torch.cuda.device_count()} GPU(s) are visible"
        )
    return device
