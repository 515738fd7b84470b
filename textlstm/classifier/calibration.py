"""Temperature scaling (Guo et al., 2017): one scalar T fitted on held-out logits.

Dividing logits by T leaves the argmax, so accuracy, untouched and only fixes confidence.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, max_iter: int = 100) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) on (logits, labels)."""
    logits = logits.detach().double().cpu()
    labels = labels.detach().long().cpu()
    # Optimise log T so T stays positive; start from T = 1.
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not (0.05 <= temperature <= 20.0) or temperature != temperature:
        return 1.0  # degenerate fit (e.g. a perfectly separated tiny split): leave logits alone
    return temperature
