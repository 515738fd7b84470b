"""The wide branch (the n-gram bag) with trigrams and a reach beyond the LSTM's max_length."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.fixtures.models import make_examples
from textlstm import bundle
from textlstm.classifier.length_buckets import pad_batch
from textlstm.classifier.network import LSTMClassifier, LSTMConfig
from textlstm.classifier.ngrams import inverse_document_frequency, ngram_ids
from textlstm.classifier.predictor import Classifier
from textlstm.training.pipeline import ModelOptions, TokenizerOptions, fit_classifier
from textlstm.training.trainer import TrainConfig

_HASH_SCRIPT = (
    "import torch; from textlstm.classifier.ngrams import ngram_ids; "
    "ids = torch.tensor([[5, 9, 2, 7, 31, 4], [8, 3, 0, 0, 0, 0]]); "
    "print(ngram_ids(ids, torch.tensor([6, 2]), vocab_size=40, buckets=1024, order=3).tolist())"
)


def _small(**overrides: object) -> LSTMConfig:
    base: dict[str, object] = {
        "vocab_size": 60, "num_classes": 3, "embedding_dim": 8, "hidden_size": 8,
        "chunk_length": 5, "ngram_buckets": 128, "ngram_dim": 4, "ngram_order": 3,
    }  # fmt: skip
    return LSTMConfig(**{**base, **overrides})  # type: ignore[arg-type]


def test_hashing_is_the_same_in_processes_with_different_hash_seeds() -> None:
    """Buckets are arithmetic on ids, not Python's salted hash: a bundle means one thing."""
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", _HASH_SCRIPT], env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        outputs.append(json.loads(run.stdout))
    assert outputs[0] == outputs[1]
    # 6 unigrams + 5 bigrams + 4 trigrams; the short row's n-grams touching padding are 0.
    assert len(outputs[0][0]) == 15
    assert outputs[0][1][6:] == [outputs[0][1][6]] + [0] * 8 and outputs[0][1][6] >= 40


def test_trigrams_extend_the_bigram_layout() -> None:
    """Order 2 is exactly the layout of bundles before `ngram_order`; order 3 appends."""
    ids, lengths = pad_batch([[2, 3, 4, 5], [6, 7]])
    two = ngram_ids(ids, lengths, vocab_size=10, buckets=16)
    three = ngram_ids(ids, lengths, vocab_size=10, buckets=16, order=3)
    assert torch.equal(three[:, : two.size(1)], two)
    assert three.size(1) == 4 + 3 + 2 and three[1, 7:].tolist() == [0, 0]
    with pytest.raises(ValueError, match="order must be 2 or 3"):
        ngram_ids(ids, lengths, vocab_size=10, buckets=16, order=4)


@pytest.mark.parametrize("weighting", ["tfidf", "mean"])
@pytest.mark.parametrize("lstm_max_length", [0, 7])
def test_the_wide_branch_never_reads_padding(lstm_max_length: int, weighting: str) -> None:
    torch.manual_seed(0)
    model = LSTMClassifier(_small(lstm_max_length=lstm_max_length, ngram_weighting=weighting))
    if weighting == "tfidf":
        model.set_ngram_idf(torch.rand(60 + 128) + 1.0)
    model.eval()
    text = list(range(2, 21))  # 19 tokens: past the LSTM's cap of 7
    with torch.inference_mode():
        alone = model(*pad_batch([text]))
        batched = model(*pad_batch([list(range(3, 60)), text, [7], text[:9]]))
    torch.testing.assert_close(batched[1], alone[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("bag", [True, False])
def test_a_token_past_the_lstms_reach_counts_only_through_the_bag(bag: bool) -> None:
    torch.manual_seed(0)
    model = LSTMClassifier(_small(lstm_max_length=10, ngram_buckets=128 if bag else 0)).eval()
    text = list(range(2, 22))  # 20 tokens; the LSTM reads the first 10
    changed = [*text[:15], 50, *text[16:]]
    with torch.inference_mode():
        before, after = model(*pad_batch([text])), model(*pad_batch([changed]))
    assert (not torch.allclose(before, after)) is bag


@pytest.fixture(scope="module")
def wide_classifier() -> Classifier:
    """LSTM reads 12 tokens, the bag (with trigrams) 60; trained briefly on synthetic topics."""
    result = fit_classifier(
        make_examples(20, seed=1),
        make_examples(6, seed=2),
        tokenizer_options=TokenizerOptions(max_length=12),
        model_options=ModelOptions(
            embedding_dim=8,
            hidden_size=8,
            chunk_length=4,
            ngram_dim=4,
            ngram_order=3,
            ngram_max_length=60,
            ngram_min_mean_tokens=0,
        ),  # fmt: skip
        train_config=TrainConfig(epochs=2, batch_size=8, seed=3),
    )
    return result.classifier


def test_the_pipeline_lets_the_bag_read_past_max_length(wide_classifier: Classifier) -> None:
    assert wide_classifier.max_length == 60  # what the predictor encodes
    assert wide_classifier.model.config.lstm_max_length == 12
    head = "goal team striker cup " * 3  # 12 tokens
    a, b = wide_classifier.predict_proba([head + "bank shares " * 10, head + "cup goal " * 10])
    assert not torch.allclose(torch.from_numpy(a), torch.from_numpy(b))


def test_wide_probabilities_are_the_same_alone_and_in_a_batch(
    wide_classifier: Classifier,
) -> None:
    long_text = " ".join(["goal team the striker and cup"] * 12)  # 72 tokens: bag reads 60
    alone = wide_classifier.predict_proba([long_text])[0]
    together = wide_classifier.predict_proba(["bank", long_text, "genome lab " * 40])[1]
    torch.testing.assert_close(
        torch.from_numpy(together), torch.from_numpy(alone), atol=1e-6, rtol=0
    )


def test_a_wide_bundle_round_trips(wide_classifier: Classifier, tmp_path: Path) -> None:
    wide_classifier.save(tmp_path / "b", metrics={})
    loaded = Classifier.load(tmp_path / "b")
    assert loaded.model.config == wide_classifier.model.config
    assert loaded.max_length == 60
    # Stacked by default: the mix fitted on the validation split travels with the weights.
    weights = wide_classifier.model.branch_weights
    assert not torch.equal(weights, torch.ones(2))
    torch.testing.assert_close(loaded.model.branch_weights, weights)
    texts = ["goal cup " * 40, "bank shares"]
    assert (loaded.predict_proba(texts) == wide_classifier.predict_proba(texts)).all()


def _trained_small(**model_overrides: object) -> Classifier:
    """A tiny classifier with the bag, trained one epoch."""
    options: dict[str, object] = {
        "embedding_dim": 8, "hidden_size": 8, "ngram_dim": 4, "ngram_min_mean_tokens": 0,
    }  # fmt: skip
    result = fit_classifier(
        make_examples(12, seed=1),
        make_examples(4, seed=2),
        model_options=ModelOptions(**{**options, **model_overrides}),  # type: ignore[arg-type]
        train_config=TrainConfig(epochs=1, batch_size=8, seed=3),
    )
    return result.classifier


def _saved_without(clf: Classifier, path: Path, keys: tuple[str, ...]) -> None:
    """Save `clf` as a bundle whose model config lacks `keys`: one written before them."""
    clf.save(path, metrics={})
    config = json.loads((path / "config.json").read_text())
    for key in keys:
        del config["model"][key]
    files = bundle.bundle_files(path)
    files.pop(bundle.MANIFEST)
    files[bundle.CONFIG] = bundle.dump_json(config)
    bundle.write_bundle(path, files, overwrite=True)


def test_a_bag_bundle_from_before_trigrams_loads_as_bigrams(tmp_path: Path) -> None:
    """A bundle with the bag but without ngram_order/ngram_max_length/lstm_max_length."""
    clf = _trained_small()
    _saved_without(clf, tmp_path / "old", ("ngram_order", "ngram_max_length", "lstm_max_length"))
    loaded = Classifier.load(tmp_path / "old")
    assert loaded.model.config.ngram_order == 2 and loaded.model.config.lstm_max_length == 0
    texts = ["goal cup " * 30, "bank"]
    assert (loaded.predict_proba(texts) == clf.predict_proba(texts)).all()


def test_idf_counts_each_text_once_and_weighs_rare_ngrams_most() -> None:
    texts = [[5, 6, 5, 5], [5, 7], [5, 8]]  # 5 is in every text, 6 in one (three times)
    idf = inverse_document_frequency(texts, vocab_size=10, buckets=16)
    assert idf.shape == (26,)
    assert idf[5] == pytest.approx(1.0)  # log(4 / 4) + 1: in every text
    assert idf[6] == idf[7] == idf[8] == pytest.approx(torch.log(torch.tensor(2.0)).item() + 1)
    assert idf[9] == idf.max()  # never seen: the largest weight, as TF-IDF gives
    bigram_5_6 = ngram_ids(torch.tensor([[5, 6]]), torch.tensor([2]), vocab_size=10, buckets=16)
    assert idf[bigram_5_6[0, 2]] < idf[9]  # a bigram a training text holds


def test_a_tfidf_bag_weighs_a_text_by_its_idf_and_unit_length() -> None:
    torch.manual_seed(0)
    model = LSTMClassifier(_small(ngram_order=2)).eval()
    idf = torch.rand(60 + 128) + 0.5
    model.set_ngram_idf(idf)
    assert model.ngram_idf is not None and model.ngram_idf[0] == 0  # padding stays out
    ids, lengths = pad_batch([[4, 9, 4, 11]])
    bag_ids = ngram_ids(ids, lengths, vocab_size=60, buckets=128)
    weights = idf[bag_ids[0]]
    expected = (model.ngrams.weight[bag_ids[0]] * (weights / weights.norm())[:, None]).sum(0)
    with torch.inference_mode():
        got = model.ngrams(bag_ids, per_sample_weights=(weights / weights.norm())[None])
    torch.testing.assert_close(got[0], expected)
    plain = LSTMClassifier(_small(ngram_weighting="mean"))
    assert plain.ngram_idf is None and "ngrams.idf" not in plain.state_dict()
    with pytest.raises(ValueError, match="not tf-idf weighted"):
        plain.set_ngram_idf(idf)


def test_a_sublinear_bag_weighs_each_ngram_by_idf_times_one_plus_log_count() -> None:
    """TfidfVectorizer(sublinear_tf=True)'s vector: idf · (1 + ln c) per distinct n-gram, unit
    length, whatever order the occurrences come in and whatever padding follows."""
    torch.manual_seed(0)
    model = LSTMClassifier(_small(ngram_order=2, ngram_weighting="sublinear")).eval()
    idf = torch.rand(60 + 128) + 0.5
    model.set_ngram_idf(idf)
    ids, lengths = pad_batch([[4, 9, 4, 4, 9, 11], [7]])
    bag_ids = ngram_ids(ids, lengths, vocab_size=60, buckets=128)[0]
    real = bag_ids[bag_ids != 0]
    distinct, counts = real.unique(return_counts=True)
    entries = idf[distinct] * (1 + counts.double().log().float())
    expected = (model.ngrams.weight[distinct] * (entries / entries.norm())[:, None]).sum(0)
    with torch.inference_mode():
        got = model._bag_features(ids, lengths)
    torch.testing.assert_close(got[0], expected)
    assert counts.max() == 3  # the text does repeat n-grams


def test_a_bag_bundle_from_before_tfidf_loads_as_a_joint_mean(tmp_path: Path) -> None:
    """A bundle whose config has no ngram_weighting or ngram_fusion (and whose weights have
    no idf and one output layer over both branches)."""
    clf = _trained_small(ngram_weighting="mean", ngram_fusion="joint")
    _saved_without(clf, tmp_path / "old", ("ngram_weighting", "ngram_fusion"))
    loaded = Classifier.load(tmp_path / "old")
    assert loaded.model.config.ngram_weighting == "mean" and loaded.model.ngram_idf is None
    assert loaded.model.config.ngram_fusion == "joint" and loaded.model.ngram_head is None
    texts = ["goal cup " * 30, "bank"]
    assert (loaded.predict_proba(texts) == clf.predict_proba(texts)).all()


def test_a_trained_tfidf_bag_keeps_its_idf_in_the_bundle(tmp_path: Path) -> None:
    clf = _trained_small()
    idf = clf.model.ngram_idf
    assert idf is not None and float(idf[1:].min()) >= 1.0 and float(idf.max()) > 1.0
    clf.save(tmp_path / "b", metrics={})
    loaded = Classifier.load(tmp_path / "b")
    assert loaded.model.ngram_idf is not None
    torch.testing.assert_close(loaded.model.ngram_idf, idf)


def test_bad_wide_options_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="^ngram_weighting must be mean, tfidf or .*, not 'l1'$"):
        ModelOptions(ngram_weighting="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^ngram_fusion must be joint or stacked, not 'sum'$"):
        ModelOptions(ngram_fusion="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^ngram_order must be 2 or 3, not 4$"):
        ModelOptions(ngram_order=4)
    with pytest.raises(ValueError, match="^ngram_max_length must be 0"):
        ModelOptions(ngram_max_length=-1)
