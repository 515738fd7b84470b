"""`Classifier`: a trained network with its tokenizer, labels and temperature; saves and loads
bundles and predicts calibrated probabilities. The worker calls exactly `Classifier.predict`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlstm import __version__, bundle
from textlstm.classifier.inference import batched_logits
from textlstm.classifier.network import LSTMClassifier, LSTMConfig
from textlstm.classifier.tokenizer import Tokenizer
from textlstm.errors import BundleError

EMPTY_TEXT_ERROR = "empty text: nothing to classify"


@dataclass(frozen=True)
class Classification:
    """One text's result. For blank text `label` is None and `error` says why."""

    label: str | None
    score: float | None
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "score": self.score,
            "probabilities": self.probabilities,
            "error": self.error,
            "truncated": self.truncated,
        }


class Classifier:
    def __init__(
        self,
        model: LSTMClassifier,
        tokenizer: Tokenizer,
        labels: Sequence[str],
        *,
        temperature: float = 1.0,
        max_length: int = 256,
        device: torch.device | str = "cpu",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if len(labels) != model.config.num_classes:
            raise ValueError("labels do not match the model's number of classes")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.temperature = float(temperature)
        self.max_length = int(max_length)
        self.metadata = dict(metadata or {})

    # -- inference -------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer.encode(t, self.max_length) for t in texts]

    def _probabilities(
        self, sequences: Sequence[Sequence[int]], batch_size: int, max_tokens: int | None
    ) -> np.ndarray:
        probs = np.full((len(sequences), len(self.labels)), np.nan, dtype=np.float32)
        real = [i for i, s in enumerate(sequences) if s]
        if real:
            logits = batched_logits(
                self.model,
                [sequences[i] for i in real],
                batch_size=batch_size,
                max_tokens=max_tokens,
                device=self.device,
            )
            probs[real] = (logits / self.temperature).softmax(dim=-1).numpy()
        return probs

    def predict_proba(
        self, texts: Sequence[str], *, batch_size: int = 128, max_tokens: int | None = None
    ) -> np.ndarray:
        """Calibrated probabilities (N, C); rows of blank texts are NaN."""
        return self._probabilities(self.encode(texts), batch_size, max_tokens)

    def predict(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 128,
        max_tokens: int | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[Classification]:
        """Label, top score and probabilities keyed by label name, in input order.

        Texts longer than `max_length` tokens are classified on their first `max_length`
        tokens (`truncated=True`); with a bag that reads further than the LSTM
        (`lstm_max_length` in the model config), `max_length` is the bag's reach and the LSTM
        reads the first `lstm_max_length` of them. Blank or whitespace-only texts get no label
        and an `error`.
        With `timings`, the seconds spent tokenizing and in the network (padding, forward,
        softmax) are added to its `tokenize_s` and `forward_s`: the worker's stage split.
        """
        started = time.perf_counter()
        tokens = [self.tokenizer.tokenize(t) for t in texts]
        sequences = [self.tokenizer.ids(t[: self.max_length]) for t in tokens]
        tokenized = time.perf_counter()
        probs = self._probabilities(sequences, batch_size, max_tokens)
        if timings is not None:
            timings["tokenize_s"] = timings.get("tokenize_s", 0.0) + tokenized - started
            forward = time.perf_counter() - tokenized
            timings["forward_s"] = timings.get("forward_s", 0.0) + forward
        out: list[Classification] = []
        for toks, row in zip(tokens, probs, strict=True):
            if not toks:
                out.append(Classification(label=None, score=None, error=EMPTY_TEXT_ERROR))
                continue
            best = int(row.argmax())
            out.append(
                Classification(
                    label=self.labels[best],
                    score=float(row[best]),
                    probabilities={lbl: float(p) for lbl, p in zip(self.labels, row, strict=True)},
                    truncated=len(toks) > self.max_length,
                )
            )
        return out

    # -- persistence -------------------------------------------------------------------------

    def config_json(self) -> dict[str, Any]:
        return {
            "textlstm_version": __version__,
            "labels": self.labels,
            "model": self.model.config.to_dict(),
            "max_length": self.max_length,
            "temperature": self.temperature,
            **self.metadata,
        }

    def save(
        self,
        out_dir: str | Path,
        *,
        metrics: Mapping[str, Any],
        extra_files: Mapping[str, bytes] | None = None,
        overwrite: bool = False,
    ) -> str:
        """Write a bundle directory; returns its digest (sha256 of the manifest)."""
        from safetensors.torch import save as save_tensors

        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        files = {
            bundle.WEIGHTS: save_tensors(state, metadata={"format": "pt"}),
            bundle.CONFIG: bundle.dump_json(self.config_json()),
            bundle.TOKENIZER: bundle.dump_json(self.tokenizer.to_json()),
            bundle.METRICS: bundle.dump_json(dict(metrics)),
            **(extra_files or {}),
        }
        return bundle.write_bundle(out_dir, files, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Classifier:
        """Verify every file's sha256, then rebuild the model from safetensors + JSON.

        Nothing in a bundle is ever unpickled or executed.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load as load_tensors

        manifest = bundle.verify_bundle(path)
        bundle.expect_kind(path, manifest, bundle.CLASSIFIER)
        config = bundle.read_json(path, bundle.CONFIG)
        try:
            labels = [str(x) for x in config["labels"]]
            model_config = LSTMConfig.from_dict(config["model"])
            tokenizer = Tokenizer.from_json(bundle.read_json(path, bundle.TOKENIZER))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"model bundle {path}: config is invalid ({exc})") from None
        if len(labels) != model_config.num_classes:
            raise BundleError(
                f"model bundle {path}: config lists {len(labels)} labels but the model has "
                f"{model_config.num_classes} outputs"
            )
        if len(tokenizer) != model_config.vocab_size:
            raise BundleError(
                f"model bundle {path}: tokenizer has {len(tokenizer)} tokens but the model "
                f"expects {model_config.vocab_size}"
            )
        try:
            state = load_tensors((Path(path) / bundle.WEIGHTS).read_bytes())
        except (SafetensorError, ValueError) as exc:
            raise BundleError(f"model bundle {path}: weights are unreadable ({exc})") from None
        model = LSTMClassifier(model_config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise BundleError(
                f"model bundle {path}: weights do not match the config ({first})"
            ) from None
        reserved = {"labels", "model", "max_length", "temperature", "textlstm_version"}
        return cls(
            model,
            tokenizer,
            labels,
            temperature=float(config.get("temperature", 1.0)),
            max_length=int(config.get("max_length", 256)),
            device=device,
            metadata={k: v for k, v in config.items() if k not in reserved},
        )
