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


def fit_branch_weights(
    branches: list[torch.Tensor], labels: torch.Tensor, *, max_iter: int = 100
) -> list[float]:
    """Weights w_i > 0 minimising the NLL of softmax(Σ w_i · branches[i]) on held-out logits.

    Stacking (Wolpert 1992) with a log-linear mix: the branch that generalises better gets
    the larger weight, and the weights' overall size does what a temperature would.
    """
    stacked = torch.stack([b.detach().double().cpu() for b in branches])  # (K, N, C)
    labels = labels.detach().long().cpu()
    log_w = torch.zeros(len(branches), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_w], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        mixed = (log_w.exp()[:, None, None] * stacked).sum(0)
        loss = F.cross_entropy(mixed, labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    weights = log_w.detach().exp().tolist()
    # A weight near 0 is an answer (that branch adds nothing on held-out texts); a huge or
    # undefined one is a degenerate fit (a tiny, perfectly separated split).
    if not all(0.0 <= w <= 50.0 for w in weights):
        return [1.0] * len(branches)
    return weights
