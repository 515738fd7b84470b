"""Architecture configuration, torch-free so the CLI can show its defaults without torch.

`ModelOptions` holds the choices a user makes (the tuned defaults live here and nowhere else);
`LSTMConfig` adds the sizes the training data decides and is what a bundle records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Pooling = Literal["last", "max", "mean"]
NgramWeighting = Literal["mean", "tfidf", "sublinear"]
NgramFusion = Literal["joint", "stacked"]

# What a bundle written before a field existed meant by leaving it out: the architecture of
# that time. `LSTMConfig.from_dict` fills these in, so an old config rebuilds the old network
# even though the defaults for new models have moved on.
LEGACY_VALUES: dict[str, Any] = {
    "chunk_length": 0,
    "ngram_buckets": 0,
    "ngram_dim": 0,
    "ngram_order": 2,
    "ngram_max_length": 0,
    "ngram_weighting": "mean",
    "ngram_fusion": "joint",
    "lstm_max_length": 0,
}


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    embedding_dim: int = 128
    hidden_size: int = 64  # biLSTM 64 trains ~1.6x faster than 128 on long texts (1 thread)
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
    # Long texts run through the LSTM as windows of this many tokens, all windows of a batch
    # in one packed batch, pooled over every token of the text. Short windows turn one long
    # sequential recurrence into a wide batch (more work per step on a CPU) and let the whole
    # text be read instead of its head. 0: one window per text (the pre-chunking network).
    # pooling "last" reads one window whatever this says: a text has one last state.
    chunk_length: int = 64
    # A fastText-style bag of unigrams and hashed bigrams beside the LSTM, its mean vector
    # joined to the pooled features: on long texts word order matters less than coverage,
    # and the bag reads every token at almost no cost. ngram_buckets is an upper bound; the
    # network gets the smallest power of two holding the training data's distinct bigrams
    # twice over. 0 buckets or 0 dim: no bag. The bound is what a long-document set needs:
    # imdb_10k's 9,000 reviews hold ~670k distinct bigrams, and at 2^18 buckets two or three
    # shared each row (the bag alone, seed 13: 89.3 at 2^18, 89.8 at 2^20, 89.8 at 2^21 at
    # twice the step time; TF-IDF + LR, with exact n-grams, 89.6). 2^20 × ngram_dim 32 is a
    # 128 MiB table, reached only by sets that large.
    ngram_buckets: int = 1 << 20
    ngram_dim: int = 32
    # When the training texts average fewer tokens than this, the bag is left out. 0: always
    # built. At the long-text rate it fitted tweets first and left the LSTM little to learn
    # (emotion: 82.9% with it, 92.3% without), which the short-text rate (TrainConfig's
    # ngram_lr_scale_short) cures; with it, the bag wins the questions and phrases where
    # TF-IDF beat the LSTM alone (trec, sst5) and costs emotion ~1 point, still 4 above
    # TF-IDF (bench/results/wide_ngrams.md, bench/results/accuracy.md).
    ngram_min_mean_tokens: int = 0
    # 2: unigrams + bigrams (fastText's setting for classification); 3 adds trigrams.
    ngram_order: int = 2
    # How many tokens of a text the bag reads, when more than the LSTM's max_length: the wide
    # branch is cheap per token, so it can see a whole long document while the LSTM reads its
    # first max_length tokens. 0: the bag reads what the LSTM reads.
    ngram_max_length: int = 0
    # How the bag weighs a text's n-grams. "tfidf": each occurrence by its inverse document
    # frequency in the training texts, the vector scaled to unit length, as TF-IDF + logistic
    # regression does, so rare telling bigrams outweigh "of the". A bag alone on imdb_10k:
    # 88.7 mean, 89.8 tfidf (TF-IDF + LR 89.6); beside the LSTM it calibrates short texts far
    # better (test ECE trec 0.056 -> 0.027, sst5 0.047 -> 0.029, seed 13) at the same
    # accuracy. "sublinear" (the default): the same with 1 + ln(count) in place of the count,
    # as TfidfVectorizer(sublinear_tf=True) does, so a word a long review repeats ten times
    # weighs 3.3 times one mention, not 10 (imdb_10k, seed 13, stacked: bag alone 89.2 -> 89.3,
    # the mix 89.3 -> 89.4; short texts rarely repeat an n-gram). "mean": the plain fastText
    # mean (every bundle before the field).
    ngram_weighting: NgramWeighting = "sublinear"
    # How the bag's evidence meets the LSTM's. "joint": one output layer over both feature
    # vectors, trained as one network (every bundle before the field). "stacked": each branch
    # has its own output layer and its own loss, so neither is trained to lean on the other,
    # and two weights fitted on the validation split mix their logits (a stacked ensemble).
    # Trained jointly, the bag fits the training texts first and leaves the LSTM little
    # gradient, and the output layer learns to trust the branch that is best on texts it has
    # already seen; mixing on held-out texts trusts the one that generalises.
    ngram_fusion: NgramFusion = "stacked"

    def __post_init__(self) -> None:
        if self.pooling not in ("last", "max", "mean"):
            raise ValueError(f"pooling must be last, max or mean, not {self.pooling!r}")
        if self.embedding_skip and self.pooling == "last":
            raise ValueError("embedding_skip needs max or mean pooling")
        for name in ("embedding_dropout", "lstm_dropout", "output_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        for name in (
            "chunk_length",
            "ngram_buckets",
            "ngram_dim",
            "ngram_min_mean_tokens",
            "ngram_max_length",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or positive")
        if self.ngram_order not in (2, 3):
            raise ValueError(f"ngram_order must be 2 or 3, not {self.ngram_order}")
        if self.ngram_weighting not in ("mean", "tfidf", "sublinear"):
            raise ValueError(
                f"ngram_weighting must be mean, tfidf or sublinear, not {self.ngram_weighting!r}"
            )
        if self.ngram_fusion not in ("joint", "stacked"):
            raise ValueError(f"ngram_fusion must be joint or stacked, not {self.ngram_fusion!r}")

    @property
    def uses_ngrams(self) -> bool:
        return self.ngram_buckets > 0 and self.ngram_dim > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class LSTMConfig(ModelOptions):
    vocab_size: int
    num_classes: int
    padding_idx: int = 0
    # The LSTM reads at most this many tokens of the ids it is given; the bag reads them all.
    # Set when the bag reads further than the LSTM (ngram_max_length > max_length); 0: the
    # LSTM reads every token it is given (every bundle before the field).
    lstm_max_length: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab_size < 2 or self.num_classes < 2:
            raise ValueError("vocab_size and num_classes must be at least 2")
        if self.lstm_max_length < 0:
            raise ValueError("lstm_max_length must be 0 (no limit) or positive")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LSTMConfig:
        """Rebuild a recorded config; fields it predates take their LEGACY_VALUES."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**{**LEGACY_VALUES, **data})
