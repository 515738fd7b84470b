"""The language model: it reads only what it may (no peeking at the token it predicts), its
weights land in a classifier under the classifier's names, and its bundle is safe and typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from textlstm import bundle
from textlstm.classifier.config import LSTMConfig
from textlstm.classifier.language_model import (
    LanguageModel,
    LMConfig,
    NegativeSampler,
    check_compatible,
    classifier_state,
    load_language_model,
    save_language_model,
)
from textlstm.classifier.network import LSTMClassifier
from textlstm.classifier.predictor import Classifier
from textlstm.classifier.tokenizer import PAD_ID, Tokenizer
from textlstm.errors import BundleError

SMALL = {"embedding_dim": 8, "hidden_size": 6}


def _tokenizer() -> Tokenizer:
    return Tokenizer.build(["a b c d e f g h i j"])


def _lm(bidirectional: bool = True, layers: int = 1) -> LanguageModel:
    torch.manual_seed(0)
    config = LMConfig(
        vocab_size=len(_tokenizer()),
        bidirectional=bidirectional,
        num_layers=layers,
        window=8,
        dropout=0.0,
        **SMALL,
    )
    return LanguageModel(config).eval()


def _per_position_loss(model: LanguageModel, ids: list[int]) -> list[torch.Tensor]:
    """Each direction's loss at each predicted position, one window at a time."""
    x = torch.tensor([ids])
    return [
        model.direction_losses(x[:, : i + 2], torch.tensor([i + 2]))[0][0]
        for i in range(len(ids) - 1)
    ]


def test_the_forward_direction_never_reads_the_token_it_predicts() -> None:
    model = _lm(bidirectional=False)
    ids = [2, 3, 4, 5, 6, 7]
    changed = [2, 3, 4, 5, 9, 7]  # position 4 differs
    x, y = torch.tensor([ids]), torch.tensor([changed])
    with torch.no_grad():
        hx = model.lstm(model.embedding(x), torch.tensor([6]))
        hy = model.lstm(model.embedding(y), torch.tensor([6]))
    # States before position 4 (which predict tokens up to position 4) are unchanged.
    assert torch.equal(hx[:, :4], hy[:, :4])
    assert not torch.equal(hx[:, 4:], hy[:, 4:])


def test_the_backward_direction_never_reads_the_token_it_predicts() -> None:
    model = _lm(bidirectional=True)
    hidden = model.config.hidden_size
    ids = [2, 3, 4, 5, 6, 7]
    changed = [2, 9, 4, 5, 6, 7]  # position 1 differs
    x, y = torch.tensor([ids]), torch.tensor([changed])
    with torch.no_grad():
        hx = model.lstm(model.embedding(x), torch.tensor([6]))[..., hidden:]
        hy = model.lstm(model.embedding(y), torch.tensor([6]))[..., hidden:]
    # Backward states after position 1 (which predict tokens from position 1 on) are unchanged.
    assert torch.equal(hx[:, 2:], hy[:, 2:])
    assert not torch.equal(hx[:, :2], hy[:, :2])


def test_sampled_softmax_is_the_full_softmax_when_every_token_is_drawn_once() -> None:
    """With a uniform proposal and each real token a negative exactly once, the corrected
    scores are the full softmax's over the real tokens: the estimator's exact case."""
    model = _lm()
    vocab = model.config.vocab_size
    counts = torch.ones(vocab)
    sampler = NegativeSampler(counts, vocab - 1, seed=0)
    every = torch.tensor([i for i in range(vocab) if i != PAD_ID])
    sampler.draw = lambda: every  # type: ignore[method-assign]
    ids = torch.tensor([[2, 3, 4, 5, 6, 7, 8, 9], [3, 5, 7, 9, 0, 0, 0, 0]])
    lengths = torch.tensor([8, 4])
    with torch.no_grad():
        sampled = model.direction_losses(ids, lengths, sampler)
        # The full softmax without the <pad> column (a pad is never a target or a negative).
        model.decoder_bias[PAD_ID] = float("-inf")
        full = model.direction_losses(ids, lengths)
    for (s_total, s_count), (f_total, f_count) in zip(sampled, full, strict=True):
        assert s_count == f_count
        assert torch.allclose(s_total, f_total, atol=1e-4)


def test_the_sampler_draws_by_smoothed_frequency_and_never_pad() -> None:
    counts = torch.tensor([50.0, 0.0, 1.0, 16.0])  # <pad>'s count is ignored
    sampler = NegativeSampler(counts, 20_000, seed=1)
    drawn = torch.bincount(sampler.draw(), minlength=4).float()
    assert drawn[PAD_ID] == 0 and drawn[1] == 0
    assert abs(drawn[3] / drawn[2] - 16**0.75) < 1.0  # 8x, not 16x: counts ** 0.75


def test_a_bidirectional_lm_has_one_layer() -> None:
    with pytest.raises(ValueError, match="one layer"):
        LMConfig(vocab_size=10, bidirectional=True, num_layers=2)
    LMConfig(vocab_size=10, bidirectional=False, num_layers=2)


def test_the_output_layer_is_tied_to_the_embedding() -> None:
    model = _lm()
    names = {n for n, _ in model.named_parameters()}
    vocab_sized = [n for n, p in model.named_parameters() if p.shape[0] == model.config.vocab_size]
    assert sorted(vocab_sized) == ["decoder_bias", "embedding.weight"], names


@pytest.mark.parametrize(
    ("chunk_length", "pooling", "bidirectional", "layers"),
    [(64, "max", True, 1), (0, "max", True, 1), (0, "last", False, 2), (16, "mean", False, 2)],
)
def test_lm_weights_load_into_windowed_and_packed_classifiers(
    chunk_length: int, pooling: str, bidirectional: bool, layers: int
) -> None:
    lm = _lm(bidirectional=bidirectional, layers=layers)
    config = LSTMConfig(
        vocab_size=lm.config.vocab_size,
        num_classes=3,
        num_layers=layers,
        bidirectional=bidirectional,
        chunk_length=chunk_length,
        pooling=pooling,  # type: ignore[arg-type]
        embedding_skip=pooling != "last",
        **SMALL,
    )
    check_compatible(lm.config, config)
    classifier = LSTMClassifier(config)
    state = classifier_state(lm.state_dict(), lm.config, windowed=classifier.windowed)
    missing, unexpected = classifier.load_state_dict(state, strict=False)
    assert not unexpected
    fresh = ("head.", "ngrams.", "ngram_head.", "branch_weights")
    assert all(m.startswith(fresh) for m in missing), missing
    # The packed LSTM with the LM's weights computes what the LM's windows compute.
    ids = torch.tensor([[2, 3, 4, 5, 6]])
    with torch.no_grad():
        lm_states = lm.lstm(lm.embedding(ids), torch.tensor([5]))
        clf_states = classifier.eval()._token_states(ids, torch.tensor([5]))
    torch.testing.assert_close(clf_states[..., : lm_states.size(-1)], lm_states)


def test_a_different_architecture_is_named() -> None:
    lm = _lm()
    config = LSTMConfig(vocab_size=lm.config.vocab_size, num_classes=2, embedding_dim=8)
    with pytest.raises(ValueError, match="hidden_size 6"):
        check_compatible(lm.config, config)


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "lm"
    save_language_model(
        path, _lm(), _tokenizer(), metrics={"validation": {}}, metadata={"corpus": None}
    )
    return path


def test_bundle_round_trip_is_typed_and_hashed(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "language-model"
    loaded = load_language_model(path)
    assert loaded.digest == bundle.bundle_digest(path)
    assert torch.equal(loaded.model.embedding.weight, _lm().embedding.weight)
    with pytest.raises(BundleError, match="is a language-model bundle, not a classifier"):
        Classifier.load(path)


def test_a_classifier_bundle_is_not_a_language_model(tiny_bundle: Path) -> None:
    with pytest.raises(BundleError, match="is a classifier bundle, not a language-model"):
        load_language_model(tiny_bundle)


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    weights = path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="weights.safetensors has been modified"):
        load_language_model(path)


def test_a_vocabulary_that_does_not_match_the_weights_is_refused(tmp_path: Path) -> None:
    """Re-hashed (so the manifest is consistent), but one token more than the embedding."""
    path = _saved(tmp_path)
    files = {n: (path / n).read_bytes() for n in bundle.REQUIRED}
    tokenizer = json.loads(files[bundle.TOKENIZER])
    tokenizer["vocab"].append("extra")
    files[bundle.TOKENIZER] = bundle.dump_json(tokenizer)
    bundle.write_bundle(path, files, overwrite=True, kind=bundle.LANGUAGE_MODEL)
    with pytest.raises(BundleError, match="tokenizer has 13 tokens but the model expects 12"):
        load_language_model(path)
