"""The classifier network: Embedding → LSTM → pooling → Linear. Pure torch, no I/O.

The LSTM runs on packed sequences, so padding never reaches its state: a text gets the same
logits alone or beside much longer texts (tests/unit/test_network.py checks this).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

Pooling = Literal["last", "max", "mean"]


@dataclass(frozen=True)
class LSTMConfig:
    vocab_size: int
    num_classes: int
    embedding_dim: int = 128
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    pooling: Pooling = "max"
    embedding_dropout: float = 0.3
    lstm_dropout: float = 0.0  # between stacked layers; ignored by torch for a single layer
    output_dropout: float = 0.3
    # Concatenate each token's embedding to its LSTM output before pooling (a skip connection,
    # as ELMo mixes its embedding layer with its LSTM layers): keyword evidence reaches the
    # classifier directly while the LSTM adds word order and context.
    embedding_skip: bool = False
    padding_idx: int = 0

    def __post_init__(self) -> None:
        if self.pooling not in ("last", "max", "mean"):
            raise ValueError(f"pooling must be last, max or mean, not {self.pooling!r}")
        if self.embedding_skip and self.pooling == "last":
            raise ValueError("embedding_skip needs max or mean pooling")
        if self.vocab_size < 2 or self.num_classes < 2:
            raise ValueError("vocab_size and num_classes must be at least 2")
        for name in ("embedding_dropout", "lstm_dropout", "output_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LSTMConfig:
        return cls(**data)


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
