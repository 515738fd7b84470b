"""Chunked encoding and the n-gram bag: serving stays exact and old bundles keep their network."""

import json
from pathlib import Path

import pytest
import torch

from tests.fixtures.models import make_examples
from textlstm import bundle
from textlstm.classifier.config import LEGACY_VALUES
from textlstm.classifier.length_buckets import pad_batch
from textlstm.classifier.network import LSTMClassifier, LSTMConfig
from textlstm.classifier.ngrams import bigram_buckets_for, ngram_ids
from textlstm.classifier.predictor import Classifier
from textlstm.classifier.tokenizer import Tokenizer
from textlstm.training.pipeline import ModelOptions, TokenizerOptions, fit_classifier
from textlstm.training.trainer import TrainConfig


@pytest.fixture(scope="module")
def chunked_classifier() -> Classifier:
    """Windows of 8 tokens and a bag, trained briefly on synthetic topics."""
    result = fit_classifier(
        make_examples(20, seed=1),
        make_examples(6, seed=2),
        tokenizer_options=TokenizerOptions(max_length=200),
        model_options=ModelOptions(
            embedding_dim=8, hidden_size=8, chunk_length=8, ngram_dim=4, ngram_min_mean_tokens=0
        ),
        train_config=TrainConfig(epochs=2, batch_size=8, seed=3),
    )
    return result.classifier


def test_a_long_texts_probabilities_are_the_same_alone_and_in_a_batch(
    chunked_classifier: Classifier,
) -> None:
    long_text = " ".join(["goal team the striker and cup"] * 20)  # 120 tokens: 15 windows
    batch = ["bank", long_text, "genome lab " * 60, "cup"]
    alone = chunked_classifier.predict_proba([long_text])[0]
    together = chunked_classifier.predict_proba(batch)[1]
    torch.testing.assert_close(
        torch.from_numpy(together), torch.from_numpy(alone), atol=1e-6, rtol=0
    )
    assert chunked_classifier.model.config.chunk_length == 8


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_chunks_and_bag_never_read_padding(bidirectional: bool, pooling: str) -> None:
    torch.manual_seed(0)
    config = LSTMConfig(
        vocab_size=50, num_classes=3, embedding_dim=8, hidden_size=8, chunk_length=5,
        bidirectional=bidirectional, pooling=pooling, ngram_buckets=64, ngram_dim=4,
    )  # fmt: skip
    model = LSTMClassifier(config).eval()
    text = list(range(2, 19))  # 17 tokens: windows of 5, 5, 5, 2
    with torch.inference_mode():
        alone = model(*pad_batch([text]))
        batched = model(*pad_batch([list(range(3, 50)), text, [7]]))
    torch.testing.assert_close(batched[1], alone[0], atol=1e-6, rtol=0)


def test_pairs_touching_padding_go_to_the_pad_row() -> None:
    ids, lengths = pad_batch([[2, 3, 4], [5]])
    out = ngram_ids(ids, lengths, vocab_size=10, buckets=16)
    assert out.shape == (2, 5)
    assert out[1].tolist() == [5, 0, 0, 0, 0]
    assert all(10 <= i < 26 for i in out[0, 3:].tolist())
    assert bigram_buckets_for(100, 1 << 18) == 256 and bigram_buckets_for(10**6, 1024) == 1024


def test_new_config_fields_round_trip_through_a_bundle(
    chunked_classifier: Classifier, tmp_path: Path
) -> None:
    chunked_classifier.save(tmp_path / "b", metrics={})
    loaded = Classifier.load(tmp_path / "b")
    assert loaded.model.config == chunked_classifier.model.config
    assert loaded.model.config.ngram_buckets > 0 and loaded.model.config.ngram_dim == 4
    texts = ["goal cup " * 30, "bank shares"]
    torch.testing.assert_close(
        torch.from_numpy(loaded.predict_proba(texts)),
        torch.from_numpy(chunked_classifier.predict_proba(texts)),
        atol=0, rtol=0,
    )  # fmt: skip


def test_a_bundle_from_before_chunking_loads_as_the_old_network(tmp_path: Path) -> None:
    torch.manual_seed(0)
    old = LSTMConfig(vocab_size=12, num_classes=2, embedding_dim=4, hidden_size=4, **LEGACY_VALUES)
    tokenizer = Tokenizer(["<pad>", "<unk>", *"abcdefghij"])
    clf = Classifier(LSTMClassifier(old), tokenizer, ["x", "y"], max_length=256)
    clf.save(tmp_path / "old", metrics={})
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in LEGACY_VALUES:
        del config["model"][key]  # what a bundle written before these fields holds
    files = bundle.bundle_files(tmp_path / "old")
    files.pop(bundle.MANIFEST)
    files[bundle.CONFIG] = bundle.dump_json(config)
    bundle.write_bundle(tmp_path / "old", files, overwrite=True)
    loaded = Classifier.load(tmp_path / "old")
    assert loaded.model.config == old
    assert loaded.model.ngrams is None
    text = [" ".join("abcdefghij" * 40)]
    assert (loaded.predict_proba(text) == clf.predict_proba(text)).all()


def test_unknown_config_fields_are_refused() -> None:
    data = LSTMConfig(vocab_size=10, num_classes=2).to_dict()
    with pytest.raises(ValueError, match="unknown model config field"):
        LSTMConfig.from_dict({**data, "wings": 2})
