"""The two baselines bench/accuracy.py puts beside the LSTM, trained in the same run.

- TF-IDF (1–2-grams, sublinear tf) + logistic regression, C picked on the validation split and
  then refitted on train + validation (scikit-learn).
- fastText-style (Joulin et al. 2016): the mean of unigram and hashed-bigram vectors through one
  linear layer, trained on the LSTM's own train split with early stopping on its validation
  split. Our own ~60 lines of torch, not the `fasttext` package (it builds a C++ extension and
  nothing can be downloaded here); the recipe is the paper's: hashed bigrams, a small dense
  vector, a linear softmax.
"""

from __future__ import annotations

import random
import re
import time
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
FASTTEXT_BUCKETS = 1 << 21  # fastText's default (2M) hash table
FASTTEXT_DIM = 32


def tfidf_logreg(
    train: tuple[Sequence[str], Sequence[str]],
    val: tuple[Sequence[str], Sequence[str]],
    test_texts: Sequence[str],
    *,
    grid: Sequence[float] = (1.0, 3.0, 10.0, 30.0),
) -> tuple[list[str], float, float]:
    """Predicted test labels, the chosen C, and the seconds the search + final fit took."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    started = time.perf_counter()

    def fit(texts: Sequence[str], labels: Sequence[str], c: float) -> tuple[object, object]:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        model = LogisticRegression(max_iter=2000, C=c)
        model.fit(vectorizer.fit_transform(texts), list(labels))
        return vectorizer, model

    scores = {}
    for c in grid:
        vectorizer, model = fit(train[0], train[1], c)
        predicted = model.predict(vectorizer.transform(val[0]))  # type: ignore[attr-defined]
        scores[c] = f1_score(list(val[1]), predicted, average="macro")
    best_c = max(grid, key=lambda c: (scores[c], -c))
    vectorizer, model = fit([*train[0], *val[0]], [*train[1], *val[1]], best_c)
    predicted = model.predict(vectorizer.transform(test_texts))  # type: ignore[attr-defined]
    return list(predicted), best_c, time.perf_counter() - started


def _hashed_ngrams(text: str) -> list[int]:
    tokens = _TOKEN_RE.findall(text.lower())
    grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
    # crc32, not hash(): Python salts str hashes per process.
    return [zlib.crc32(g.encode()) % (FASTTEXT_BUCKETS - 1) + 1 for g in grams] or [0]


class _FastText(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(
            FASTTEXT_BUCKETS, FASTTEXT_DIM, mode="mean", sparse=True, padding_idx=0
        )
        nn.init.uniform_(self.bag.weight, -1.0 / FASTTEXT_DIM, 1.0 / FASTTEXT_DIM)
        self.out = nn.Linear(FASTTEXT_DIM, num_classes)

    def forward(self, flat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.out(self.bag(flat, offsets))


def _batch(rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    offsets = np.cumsum([0] + [len(r) for r in rows[:-1]])
    flat = torch.tensor([i for r in rows for i in r], dtype=torch.long)
    return flat, torch.tensor(offsets, dtype=torch.long)


def _logits(model: _FastText, rows: Sequence[list[int]]) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(*_batch(rows[i : i + 512])) for i in range(0, len(rows), 512)])


def fasttext_style(
    train: tuple[Sequence[str], Sequence[str]],
    val: tuple[Sequence[str], Sequence[str]],
    test_texts: Sequence[str],
    *,
    seed: int = 13,
    epochs: int = 10,
    patience: int = 2,
    batch_size: int = 32,
    lr: float = 0.02,
) -> tuple[list[str], int, float]:
    """Predicted test labels, the best epoch, and the seconds training took."""
    from sklearn.metrics import f1_score

    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    labels = sorted(set(train[1]))
    index = {label: i for i, label in enumerate(labels)}
    x_train = [_hashed_ngrams(t) for t in train[0]]
    y_train = torch.tensor([index[y] for y in train[1]])
    x_val = [_hashed_ngrams(t) for t in val[0]]
    model = _FastText(len(labels))
    sparse_opt = torch.optim.SparseAdam(list(model.bag.parameters()), lr=lr)
    dense_opt = torch.optim.Adam(model.out.parameters(), lr=lr)
    best = (-1.0, 0, {k: v.clone() for k, v in model.state_dict().items()})
    stale = 0
    order = list(range(len(x_train)))
    for epoch in range(1, epochs + 1):
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(model(*_batch([x_train[i] for i in batch])), y_train[batch])
            sparse_opt.zero_grad()
            dense_opt.zero_grad()
            loss.backward()
            sparse_opt.step()
            dense_opt.step()
        predicted = [labels[i] for i in _logits(model, x_val).argmax(1).tolist()]
        score = f1_score(list(val[1]), predicted, average="macro")
        if score > best[0]:
            best, stale = (score, epoch, {k: v.clone() for k, v in model.state_dict().items()}), 0
        else:
            stale += 1
            if stale >= patience:
                break
    model.load_state_dict(best[2])
    logits = _logits(model, [_hashed_ngrams(t) for t in test_texts])
    return [labels[i] for i in logits.argmax(1).tolist()], best[1], time.perf_counter() - started
