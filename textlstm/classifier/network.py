"""The classifier network: Embedding → LSTM → pooling (+ a bag of n-grams) → Linear.

Pure torch, no I/O. The LSTM runs on packed sequences, so padding never reaches its state: a text
gets the same logits alone or beside much longer texts (tests/unit/classifier/test_network.py checks
this). With `chunk_length`, each text is cut into windows of that many tokens and every window of
the batch runs through the LSTM as one packed batch; pooling then runs over all of a text's tokens,
whichever window they were in. With n-gram buckets, a fastText-style mean of unigram and hashed
bigram (and optionally trigram) vectors is joined to the pooled LSTM features before the output
layer: the "wide" half of a wide & deep network, which may read further into a text than the LSTM.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textlstm.classifier.config import LSTMConfig
from textlstm.classifier.ngrams import ngram_ids
from textlstm.classifier.windows import WindowLSTM

__all__ = ["LSTMClassifier", "LSTMConfig"]


class LSTMClassifier(nn.Module):
    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(
            config.vocab_size, config.embedding_dim, padding_idx=config.padding_idx
        )
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        # Windows run through padded LSTMs (see windows.py for why not packed); without
        # windows (chunk_length 0, or pooling "last") the original packed nn.LSTM is used, so
        # bundles from before chunking load into the same parameter names.
        self.windowed = config.chunk_length > 0 and config.pooling != "last"
        self.lstm: nn.Module
        if self.windowed:
            self.lstm = WindowLSTM(
                config.embedding_dim,
                config.hidden_size,
                num_layers=config.num_layers,
                bidirectional=config.bidirectional,
                dropout=config.lstm_dropout,
            )
        else:
            self.lstm = nn.LSTM(
                config.embedding_dim,
                config.hidden_size,
                num_layers=config.num_layers,
                bidirectional=config.bidirectional,
                dropout=config.lstm_dropout if config.num_layers > 1 else 0.0,
                batch_first=True,
            )
        directions = 2 if config.bidirectional else 1
        self.output_dropout = nn.Dropout(config.output_dropout)
        features = config.hidden_size * directions
        if config.embedding_skip:
            features += config.embedding_dim
        self.ngrams: nn.EmbeddingBag | None = None
        self.stacked = config.uses_ngrams and config.ngram_fusion == "stacked"
        if config.uses_ngrams:
            rows = config.vocab_size + config.ngram_buckets
            tfidf = config.ngram_weighting != "mean"
            self.ngrams = nn.EmbeddingBag(
                rows,
                config.ngram_dim,
                mode="sum" if tfidf else "mean",
                padding_idx=config.padding_idx,
            )
            if tfidf:
                # Filled from the training texts (set_ngram_idf) and saved with the weights
                # as "ngrams.idf"; padding's 0 keeps it out of every text's norm.
                idf = torch.ones(rows)
                idf[config.padding_idx] = 0.0
                self.ngrams.register_buffer("idf", idf)
            # fastText's initialisation: small, so the mean of hundreds of untrained rows
            # starts near zero instead of drowning the LSTM features.
            with torch.no_grad():
                bound = 1.0 / config.ngram_dim
                self.ngrams.weight.uniform_(-bound, bound)
                self.ngrams.weight[config.padding_idx].zero_()
            if not self.stacked:
                features += config.ngram_dim
        self.head = nn.Linear(features, config.num_classes)
        self.ngram_head: nn.Linear | None = None
        if self.stacked:
            self.ngram_head = nn.Linear(config.ngram_dim, config.num_classes)
            # logits = w[0] · LSTM logits + w[1] · bag logits; set after training from the
            # validation split (set_branch_weights) and saved with the weights.
            self.register_buffer("branch_weights", torch.ones(2))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T) int64 right-padded, lengths (B,) ≥ 1 → logits (B, C).

        With `lstm_max_length`, the LSTM reads each text's first that many tokens and the bag
        all of them: a long document's tail still counts, at the bag's cost per token.
        """
        if self.ngram_head is not None:
            branches = self.branch_logits(ids, lengths)
            lstm_logits, bag_logits = branches.chunk(2, dim=1)
            weights = self.branch_weights
            return weights[0] * lstm_logits + weights[1] * bag_logits
        features = self._lstm_features(ids, lengths)
        if self.ngrams is not None:
            features = torch.cat([features, self._bag_features(ids, lengths)], 1)
        return self.head(self.output_dropout(features))

    def branch_logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """A stacked network's two branches' own logits side by side: (B, 2C), the LSTM's
        first."""
        return torch.cat([self.lstm_logits(ids, lengths), self.bag_logits(ids, lengths)], 1)

    def lstm_logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """A stacked network's LSTM branch alone (training scores it with its own loss)."""
        if self.ngram_head is None:
            raise ValueError("only a stacked network (ngram_fusion 'stacked') has branches")
        return self.head(self.output_dropout(self._lstm_features(ids, lengths)))

    def bag_logits(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """A stacked network's n-gram bag alone: a linear model of the text's tf-idf n-grams."""
        if self.ngram_head is None:
            raise ValueError("only a stacked network (ngram_fusion 'stacked') has branches")
        return self.ngram_head(self.output_dropout(self._bag_features(ids, lengths)))

    def set_branch_weights(self, lstm: float, bag: float) -> None:
        """Mix a stacked network's branches as lstm · LSTM logits + bag · bag logits."""
        if self.ngram_head is None:
            raise ValueError("only a stacked network (ngram_fusion 'stacked') has branch weights")
        with torch.no_grad():
            self.branch_weights.copy_(torch.tensor([lstm, bag]))

    def _lstm_features(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        cap = self.config.lstm_max_length
        if cap and ids.size(1) > cap:
            ids, lengths = ids[:, :cap], lengths.clamp(max=cap)
        if self.config.pooling == "last":
            return self._last_state(ids, lengths)
        return self._pooled(ids, lengths)

    def _bag_features(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        assert self.ngrams is not None
        bag_ids = ngram_ids(
            ids,
            lengths,
            vocab_size=self.config.vocab_size,
            buckets=self.config.ngram_buckets,
            order=self.config.ngram_order,
        )
        weights, idf = None, self.ngram_idf
        if idf is not None:
            weights = idf[bag_ids]
            if self.config.ngram_weighting == "sublinear":
                # Each occurrence of an n-gram seen c times in the text weighs (1 + ln c) / c,
                # so the n-gram's entry in the text's vector is idf · (1 + ln c), as
                # TfidfVectorizer(sublinear_tf=True) makes it; the norm sums c · w² per
                # occurrence, which is that vector's squared length.
                counts = _occurrences(bag_ids).to(weights.dtype)
                weights = weights * (1.0 + counts.log()) / counts
                norm = (counts * weights.square()).sum(1, keepdim=True).sqrt()
            else:
                norm = weights.square().sum(1, keepdim=True).sqrt()
            weights = weights / norm.clamp_min(1e-12)
        return self.ngrams(bag_ids, per_sample_weights=weights)

    @property
    def ngram_idf(self) -> torch.Tensor | None:
        """The bag's tf-idf weights, or None when it takes a plain mean."""
        idf = getattr(self.ngrams, "idf", None) if self.ngrams is not None else None
        return idf if isinstance(idf, torch.Tensor) else None

    def set_ngram_idf(self, idf: torch.Tensor) -> None:
        """Use `idf` (one weight per bag row, from `ngrams.inverse_document_frequency`)."""
        own = self.ngram_idf
        if own is None:
            raise ValueError("this network's bag is not tf-idf weighted")
        if idf.shape != own.shape:
            raise ValueError(f"idf has shape {tuple(idf.shape)}, not {tuple(own.shape)}")
        with torch.no_grad():
            own.copy_(idf)
            own[self.config.padding_idx] = 0.0

    def _last_state(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embedding_dropout(self.embedding(ids))  # (B, T, E)
        # pack_padded_sequence wants lengths on the CPU whatever the model's device.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        # h_n: (layers * directions, B, H), already at each sequence's true last step
        # (and, for the backward direction, its first), in the original batch order.
        if self.config.bidirectional:
            return torch.cat([h_n[-2], h_n[-1]], dim=1)
        return h_n[-1]

    def _token_states(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, H·D [+ E]) per-token features; rows past a text's length are garbage."""
        if not self.windowed:
            x = self.embedding_dropout(self.embedding(ids))  # (B, T, E)
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            seq, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.size(1))
            return torch.cat([seq, x], dim=-1) if self.config.embedding_skip else seq
        batch, steps = ids.shape
        window = self.config.chunk_length
        chunks = -(-steps // window)
        if chunks * window != steps:
            ids = F.pad(ids, (0, chunks * window - steps), value=self.config.padding_idx)
        starts = torch.arange(chunks, device=lengths.device) * window
        chunk_lengths = (lengths[:, None] - starts[None, :]).clamp(0, window).reshape(-1)
        real = chunk_lengths > 0  # (B·K,) windows holding at least one token
        windows = ids.reshape(batch * chunks, window)[real.to(ids.device)]
        # Trim the windows to the longest one: a batch of short texts stays short.
        width = int(chunk_lengths.max())
        x = self.embedding_dropout(self.embedding(windows[:, :width]))  # (W, N, E)
        seq = self.lstm(x, chunk_lengths[real])
        if self.config.embedding_skip:
            seq = torch.cat([seq, x], dim=-1)  # (W, N, H·D + E)
        if chunks == 1:
            return seq
        full = seq.new_zeros(batch * chunks, window, seq.size(-1))
        full[real.to(ids.device), :width] = seq
        return full.reshape(batch, chunks * window, -1)[:, :steps]

    def _pooled(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        seq = self._token_states(ids, lengths)
        mask = (
            torch.arange(ids.size(1), device=ids.device)[None, :] < lengths.to(ids.device)[:, None]
        )  # (B, T) True at real tokens
        if self.config.pooling == "max":
            return seq.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)
        summed = (seq * mask[:, :, None]).sum(dim=1)
        return summed / lengths.to(ids.device)[:, None].to(seq.dtype)


def _occurrences(ids: torch.Tensor) -> torch.Tensor:
    """(B, L) → how many times each entry's id occurs in its row (padding included)."""
    ordered, order = ids.sort(dim=1)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    run = starts.long().cumsum(1) - 1  # (B, L) which run of equal ids each entry is in
    per_run = torch.zeros_like(ordered).scatter_add_(1, run, torch.ones_like(ordered))
    counts = torch.empty_like(ordered)
    counts.scatter_(1, order, per_run.gather(1, run))
    return counts
