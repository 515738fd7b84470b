"""A next-token language model built from the classifier's own parts, and its bundle.

The LM is the classifier's embedding and `WindowLSTM` with a decoder on top, so its weights load
into a classifier by name (`classifier_state`). It reads text the way the classifier does:
windows of `window` tokens, each from a zero state. The forward LSTM's output at position i has
read tokens 0..i and predicts token i+1; the backward LSTM's (run on the reversed window) has
read i..n-1 and predicts token i-1 — ULMFiT's forward and backward language models, trained in
one pass. A bidirectional LM has one layer: stacked, the second forward layer would read the
first backward layer's outputs, which have seen the very token it must predict.

The decoder is tied to the embedding (Press & Wolf 2017): each direction projects its hidden
state to the embedding width and scores it against every embedding row, so the output layer
costs no vocabulary-sized matrix of its own and rare words' input vectors learn from the output
side too.

Pure torch, no I/O except the bundle functions at the bottom, which go through textlstm.bundle
(safetensors + JSON, sha256 manifest; nothing is unpickled).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from textlstm import __version__, bundle
from textlstm.classifier.config import LSTMConfig
from textlstm.classifier.tokenizer import PAD_ID, Tokenizer
from textlstm.classifier.windows import WindowLSTM
from textlstm.errors import BundleError

LM_FORMAT = "textlstm-lm"
LM_FORMAT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class LMConfig:
    """The LM's architecture; embedding_dim, hidden_size, num_layers and bidirectional are what
    a classifier initialised from it must use."""

    vocab_size: int
    embedding_dim: int = 128
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = True
    window: int = 64  # tokens per window, as the classifier's chunk_length
    dropout: float = 0.2  # on the embeddings and on the LSTM outputs

    def __post_init__(self) -> None:
        if self.vocab_size < 3:
            raise ValueError("vocab_size must be at least 3")
        for name in ("embedding_dim", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.window < 2:
            raise ValueError("window must be at least 2 tokens (one to read, one to predict)")
        if self.bidirectional and self.num_layers > 1:
            raise ValueError(
                "a bidirectional language model has one layer (stacked, each direction would "
                "see the tokens it predicts); use --unidirectional for more layers"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown language model config field(s): {', '.join(unknown)}")
        return cls(**data)


class NegativeSampler:
    """Sampled softmax's proposal: each training step scores a token's true next token against
    `k` tokens drawn from the corpus' unigram counts raised to 0.75 (word2vec's smoothing),
    not against the whole vocabulary (Jean et al. 2015). The decoder's vocabulary-wide product
    was nearly all of an LM step's cost on a CPU; k negatives shared by every position of a
    step cost k / vocab_size of it. Scores are corrected by log q (the draw's log-probability),
    so the sampled loss estimates the full softmax's gradient; perplexity is still measured
    with the full softmax.
    """

    def __init__(
        self, counts: torch.Tensor, k: int, *, seed: int, device: torch.device | str = "cpu"
    ) -> None:
        if k < 1:
            raise ValueError("k must be positive")
        q = counts.double().clamp_min(0.0) ** 0.75
        q[PAD_ID] = 0.0
        if float(q.sum()) <= 0.0:
            raise ValueError("the counts hold no token")
        q /= q.sum()
        self.q = q.float()
        # On the model's device once, not copied every step. A token never drawn is never a
        # negative; its -inf never reaches a score.
        self.log_q = torch.log(self.q).to(device)
        self.k = k
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self) -> torch.Tensor:
        return torch.multinomial(self.q, self.k, replacement=True, generator=self.generator)


def _sampled_cross_entropy(
    picked: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    negatives: torch.Tensor,
    log_q: torch.Tensor,
) -> torch.Tensor:
    """Summed cross-entropy of each row's target against the shared negatives, all scores
    corrected by -log q; a negative that is the row's own target is left out."""
    true = (picked * weight[target]).sum(-1) + bias[target] - log_q[target]
    sampled = picked @ weight[negatives].t() + bias[negatives] - log_q[negatives]
    sampled = sampled.masked_fill(negatives[None, :] == target[:, None], float("-inf"))
    logits = torch.cat([true[:, None], sampled], dim=1)
    return -torch.log_softmax(logits, dim=1)[:, 0].sum()


class LanguageModel(nn.Module):
    def __init__(self, config: LMConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.lstm = WindowLSTM(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
        )
        self.dropout = nn.Dropout(config.dropout)
        directions = 2 if config.bidirectional else 1
        # One projection per direction: they predict different neighbours.
        self.projections = nn.ModuleList(
            nn.Linear(config.hidden_size, config.embedding_dim, bias=False)
            for _ in range(directions)
        )
        self.decoder_bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(
        self, ids: torch.Tensor, lengths: torch.Tensor, sampler: NegativeSampler | None = None
    ) -> torch.Tensor:
        """ids (W, N) right-padded windows, lengths (W,) ≥ 1 → mean next/previous-token loss.

        The loss is the mean cross-entropy over every predicted position of every direction;
        with a sampler, against one draw of negatives shared by both directions.
        """
        losses = self.direction_losses(ids, lengths, sampler)
        return torch.stack([total / max(count, 1) for total, count in losses]).mean()

    def direction_losses(
        self, ids: torch.Tensor, lengths: torch.Tensor, sampler: NegativeSampler | None = None
    ) -> list[tuple[torch.Tensor, int]]:
        """Per direction, (summed cross-entropy, predicted positions): for perplexity (full
        softmax, no sampler) or training."""
        hidden = self.config.hidden_size
        x = self.dropout(self.embedding(ids))
        states = self.dropout(self.lstm(x, lengths))  # (W, N, H·D)
        steps = ids.size(1)
        positions = torch.arange(steps, device=ids.device)[None, :]
        real = positions < lengths.to(ids.device)[:, None]  # (W, N)
        out: list[tuple[torch.Tensor, int]] = []
        drawn = None if sampler is None else (sampler.draw().to(ids.device), sampler.log_q)
        # Forward: the state at i predicts token i+1, for i+1 a real token.
        pairs = [(states[:, :-1, :hidden], ids[:, 1:], real[:, 1:])]
        if self.config.bidirectional:
            # Backward: the state at i (which read i..n-1) predicts token i-1.
            pairs.append((states[:, 1:, hidden:], ids[:, :-1], real[:, 1:]))
        for projection, (state, target, mask) in zip(self.projections, pairs, strict=True):
            picked = projection(state[mask])  # (P, E) only real positions reach the softmax
            if drawn is not None:
                total = _sampled_cross_entropy(
                    picked, target[mask], self.embedding.weight, self.decoder_bias, *drawn
                )
            else:
                logits = picked @ self.embedding.weight.t() + self.decoder_bias
                total = F.cross_entropy(logits, target[mask], reduction="sum")
            out.append((total, int(mask.sum())))
        return out


# -- into a classifier ------------------------------------------------------------------------


def check_compatible(lm: LMConfig, model: LSTMConfig) -> None:
    """Raise ValueError naming the first architecture choice the classifier does not share."""
    for name in ("vocab_size", "embedding_dim", "hidden_size", "num_layers", "bidirectional"):
        if getattr(lm, name) != getattr(model, name):
            raise ValueError(
                f"the language model has {name} {getattr(lm, name)!r}, the classifier "
                f"{getattr(model, name)!r}"
            )


def classifier_state(
    lm_state: dict[str, torch.Tensor], lm: LMConfig, *, windowed: bool
) -> dict[str, torch.Tensor]:
    """The LM's embedding and LSTM weights under the classifier's parameter names.

    A windowed classifier uses the same `WindowLSTM` names; one without windows (chunk_length 0
    or pooling "last") has a single `nn.LSTM`, whose layer k is `..._l{k}` and whose backward
    direction is `..._l{k}_reverse`.
    """
    out = {"embedding.weight": lm_state["embedding.weight"]}
    for name, tensor in lm_state.items():
        if not name.startswith("lstm."):
            continue
        if windowed:
            out[name] = tensor
            continue
        # lstm.forward_layers.{k}.weight_ih_l0 -> lstm.weight_ih_l{k}[_reverse]
        _, stack, layer, param = name.split(".")
        suffix = "_reverse" if stack == "backward_layers" else ""
        out[f"lstm.{param.removesuffix('_l0')}_l{layer}{suffix}"] = tensor
    return out


# -- bundle -------------------------------------------------------------------------------------


@dataclass
class LoadedLM:
    model: LanguageModel
    tokenizer: Tokenizer
    config: dict[str, Any]  # the whole config.json
    digest: str  # sha256 of the manifest: the lineage a classifier records

    @property
    def lm_config(self) -> LMConfig:
        return self.model.config


def save_language_model(
    out_dir: str | Path,
    model: LanguageModel,
    tokenizer: Tokenizer,
    *,
    metrics: dict[str, Any],
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> str:
    """Write an LM bundle (kind "language-model"); returns its digest."""
    from safetensors.torch import save as save_tensors

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config = {
        "format": LM_FORMAT,
        "format_version": LM_FORMAT_VERSION,
        "kind": bundle.LANGUAGE_MODEL,
        "textlstm_version": __version__,
        "model": model.config.to_dict(),
        **metadata,
    }
    files = {
        bundle.WEIGHTS: save_tensors(state, metadata={"format": "pt"}),
        bundle.CONFIG: bundle.dump_json(config),
        bundle.TOKENIZER: bundle.dump_json(tokenizer.to_json()),
        bundle.METRICS: bundle.dump_json(metrics),
    }
    return bundle.write_bundle(out_dir, files, overwrite=overwrite, kind=bundle.LANGUAGE_MODEL)


def load_language_model(path: str | Path) -> LoadedLM:
    """Verify every file's sha256 and the kind, then rebuild the LM; BundleError in one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    manifest = bundle.verify_bundle(path)
    bundle.expect_kind(path, manifest, bundle.LANGUAGE_MODEL)
    config = bundle.read_json(path, bundle.CONFIG)
    if config.get("format") != LM_FORMAT or config.get("format_version") != LM_FORMAT_VERSION:
        raise BundleError(
            f"language model {path}: config format {config.get('format')!r} version "
            f"{config.get('format_version')!r} is not supported (this textlstm reads "
            f"{LM_FORMAT} {LM_FORMAT_VERSION})"
        )
    try:
        lm_config = LMConfig.from_dict(config["model"])
        tokenizer = Tokenizer.from_json(bundle.read_json(path, bundle.TOKENIZER))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"language model {path}: config is invalid ({exc})") from None
    if len(tokenizer) != lm_config.vocab_size:
        raise BundleError(
            f"language model {path}: tokenizer has {len(tokenizer)} tokens but the model "
            f"expects {lm_config.vocab_size}"
        )
    try:
        state = load_tensors((Path(path) / bundle.WEIGHTS).read_bytes())
    except (SafetensorError, ValueError) as exc:
        raise BundleError(f"language model {path}: weights are unreadable ({exc})") from None
    model = LanguageModel(lm_config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        # torch's first line only says that loading failed; the second names the tensor.
        detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])
        raise BundleError(
            f"language model {path}: weights do not match the config ({detail})"
        ) from None
    return LoadedLM(
        model=model.eval(), tokenizer=tokenizer, config=config, digest=bundle.bundle_digest(path)
    )
