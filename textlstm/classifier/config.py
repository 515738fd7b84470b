"""Architecture configuration, torch-free so the CLI can show its defaults without torch.

`ModelOptions` holds the choices a user makes (the tuned defaults live here and nowhere else);
`LSTMConfig` adds the two sizes the training data decides and is what a bundle records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Pooling = Literal["last", "max", "mean"]


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
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
    embedding_skip: bool = True

    def __post_init__(self) -> None:
        if self.pooling not in ("last", "max", "mean"):
            raise ValueError(f"pooling must be last, max or mean, not {self.pooling!r}")
        if self.embedding_skip and self.pooling == "last":
            raise ValueError("embedding_skip needs max or mean pooling")
        for name in ("embedding_dropout", "lstm_dropout", "output_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class LSTMConfig(ModelOptions):
    vocab_size: int
    num_classes: int
    padding_idx: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab_size < 2 or self.num_classes < 2:
            raise ValueError("vocab_size and num_classes must be at least 2")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LSTMConfig:
        return cls(**data)
