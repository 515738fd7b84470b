"""Temperature scaling (Guo et al., 2017): one scalar T fitted on held-out logits.

Dividing logits by T leaves the argmax, so accuracy, untouched and only fixes confidence.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _fit_log_linear(stacked: torch.Tensor, labels: torch.Tensor, max_iter: int) -> list[float]:
    """Scales w_i > 0 minimising the NLL of softmax(Σ w_i · stacked[i]) on (stacked, labels).

    Fitted as log w (so each stays positive) from w = 1 by L-BFGS; one tensor of K logit sets
    (K, N, C). A temperature is the one-set case, T = 1 / w.
    """
    stacked = stacked.detach().double().cpu()
    labels = labels.detach().long().cpu()
    log_w = torch.zeros(stacked.shape[0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_w], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy((log_w.exp()[:, None, None] * stacked).sum(0), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return log_w.detach().exp().tolist()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, *, max_iter: int = 100) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) on (logits, labels)."""
    (scale,) = _fit_log_linear(logits[None], labels, max_iter)
    if not (0.05 <= scale <= 20.0):  # also false for NaN
        return 1.0  # degenerate fit (e.g. a perfectly separated tiny split): leave logits alone
    return 1.0 / scale


def fit_branch_weights(
    branches: list[torch.Tensor], labels: torch.Tensor, *, max_iter: int = 100
) -> list[float]:
    """Weights w_i > 0 minimising the NLL of softmax(Σ w_i · branches[i]) on held-out logits.

    Stacking (Wolpert 1992) with a log-linear mix: the branch that generalises better gets
    the larger weight, and the weights' overall size does what a temperature would.
    """
    weights = _fit_log_linear(torch.stack(branches), labels, max_iter)
    # A weight near 0 is an answer (that branch adds nothing on held-out texts); a huge or
    # undefined one is a degenerate fit (a tiny, perfectly separated split).
    if not all(0.0 <= w <= 50.0 for w in weights):
        return [1.0] * len(branches)
    return weights
