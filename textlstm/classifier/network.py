"""The classifier network: Embedding → LSTM → pooling → Linear. Pure torch, no I/O.

The LSTM runs on packed sequences, so padding never reaches its state: a text gets the same
logits alone or beside much longer texts (tests/unit/test_network.py checks this).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textlstm.classifier.config import LSTMConfig

__all__ = ["LSTMClassifier", "LSTMConfig"]


class LSTMClassifier(nn.Module):
    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(
            config.vocab_size, config.embedding_dim, padding_idx=config.padding_idx
        )
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
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
        self.head = nn.Linear(features, config.num_classes)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids (B, T) int64 right-padded, lengths (B,) ≥ 1 → logits (B, C)."""
        x = self.embedding_dropout(self.embedding(ids))  # (B, T, E)
        # pack_padded_sequence wants lengths on the CPU whatever the model's device.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)
        if self.config.pooling == "last":
            # h_n: (layers * directions, B, H), already at each sequence's true last step
            # (and, for the backward direction, its first), in the original batch order.
            if self.config.bidirectional:
                features = torch.cat([h_n[-2], h_n[-1]], dim=1)
            else:
                features = h_n[-1]
        else:
            seq, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.size(1))
            if self.config.embedding_skip:
                seq = torch.cat([seq, x], dim=-1)  # (B, T, H·D + E)
            mask = (
                torch.arange(ids.size(1), device=ids.device)[None, :]
                < lengths.to(ids.device)[:, None]
            )  # (B, T) True at real tokens
            if self.config.pooling == "max":
                features = seq.masked_fill(~mask[:, :, None], float("-inf")).amax(dim=1)
            else:
                summed = (seq * mask[:, :, None]).sum(dim=1)
                features = summed / lengths.to(ids.device)[:, None].to(seq.dtype)
        return self.head(self.output_dropout(features))
