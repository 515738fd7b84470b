"""Pretraining: corpora in three formats, bad ones in one line, a loss that falls, and a
classifier that starts from the LM, keeps it frozen for its first epoch and loads as usual."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from tests.fixtures.models import make_examples
from textlstm.classifier.language_model import load_language_model, save_language_model
from textlstm.classifier.predictor import Classifier
from textlstm.errors import BundleError, ConfigError, DataError
from textlstm.training.config import PretrainConfig, TokenizerOptions
from textlstm.training.pipeline import ModelOptions, fit_classifier
from textlstm.training.pretrain import (
    corpus_windows,
    pretrain_language_model,
    read_corpus,
)
from textlstm.training.trainer import TrainConfig

LM = PretrainConfig(embedding_dim=16, hidden_size=16, epochs=4, batch_size=16, learning_rate=1e-2)


def _texts(n: int = 40, seed: int = 7) -> list[str]:
    return [e.text for e in make_examples(n, seed=seed)]


def test_text_csv_and_jsonl_corpora_read_the_same_documents(tmp_path: Path) -> None:
    texts = ["first document here", "second one, with a comma", "third"]
    (tmp_path / "c.txt").write_text("\n".join(texts[:2]) + "\n\n" + texts[2] + "\n")
    (tmp_path / "c.csv").write_text(
        'id,text,label\n1,first document here,x\n2,"second one, with a comma",y\n3,third,z\n'
    )
    (tmp_path / "c.jsonl").write_text(
        "".join(json.dumps({"text": t, "other": 1}) + "\n" for t in texts)
    )
    for name in ("c.txt", "c.csv", "c.jsonl"):
        corpus = read_corpus(tmp_path / name)
        assert corpus.texts == texts, name
        assert len(corpus.fingerprint) == 64


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "missing.txt: file not found"),
        ("blank.txt", "\n  \n\n", "blank.txt: file has no text"),
        ("empty.csv", "", "empty.csv: file is empty"),
        ("nocol.csv", "body,label\nhello,x\n", "nocol.csv: line 1: missing column 'text'"),
        ("nofield.jsonl", '{"body": "x"}\n', "nofield.jsonl: line 1: missing field 'text'"),
        ("bad.txt", b"ok\n\xff\xfe\n", "bad.txt: line 2: bytes are not valid UTF-8"),
        ("corpus.docx", "x", "unknown corpus type '.docx'"),
    ],
)
def test_bad_corpora_are_one_data_error(
    tmp_path: Path, name: str, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(")) as info:
        read_corpus(path)
    assert "\n" not in str(info.value)


def test_windows_follow_the_classifier_and_skip_one_token_tails() -> None:
    from textlstm.classifier.tokenizer import Tokenizer

    tokenizer = Tokenizer.build(["a b c d e f g"])
    windows = corpus_windows(["a b c d e", "f", "a b c d e f g"], tokenizer, max_length=6, window=3)
    assert [len(w) for w in windows] == [3, 2, 3, 3]


def _grammar(n: int = 200, seed: int = 3) -> list[str]:
    """Sentences with structure an LM can learn (make_examples' words are random)."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "my friend", "the teacher"]
    verbs = ["saw", "liked", "found", "painted"]
    objects = ["the red ball", "a small house", "the old boat", "a green tree"]
    return [
        f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} near the river ."
        for _ in range(n)
    ]


def test_lm_loss_falls_and_validation_perplexity_is_reported() -> None:
    result = pretrain_language_model(_grammar(), config=LM)
    history = result.history
    assert len(history) == 4
    assert history[-1].train_loss < history[0].train_loss - 1.0
    assert history[-1].val_perplexity < history[0].val_perplexity / 2
    validation = result.metrics["validation"]
    assert validation["perplexity"] < len(result.tokenizer) / 4
    assert {"forward_perplexity", "backward_perplexity"} <= set(validation)


def test_sampled_negatives_learn_what_the_full_softmax_learns() -> None:
    """A few negatives per step instead of the whole vocabulary: the loss still falls and the
    validation perplexity, measured with the full softmax, ends near the full softmax's."""
    texts = _grammar()
    full = pretrain_language_model(texts, config=LM)
    vocab = len(full.tokenizer)
    sampled = pretrain_language_model(
        texts, config=PretrainConfig(**{**LM.to_dict(), "sampled_negatives": vocab // 3})
    )
    assert sampled.history[-1].val_perplexity < sampled.history[0].val_perplexity / 2
    assert sampled.metrics["validation"]["perplexity"] < vocab / 4
    assert (
        sampled.metrics["validation"]["perplexity"] < 1.5 * full.metrics["validation"]["perplexity"]
    )


def test_pretraining_repeats_exactly_for_a_seed() -> None:
    config = PretrainConfig(embedding_dim=8, hidden_size=8, epochs=1, batch_size=16)
    a = pretrain_language_model(_texts(10), config=config)
    b = pretrain_language_model(_texts(10), config=config)
    theirs = b.model.state_dict()
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name


def test_corpora_too_small_are_refused() -> None:
    with pytest.raises(DataError, match="at least 2 documents"):
        pretrain_language_model(["one document only"], config=LM)
    with pytest.raises(DataError, match="lower --min-freq"):
        pretrain_language_model(["alpha", "beta"], config=LM)


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = pretrain_language_model(_texts(), config=LM)
    path = tmp_path_factory.mktemp("lm") / "lm"
    save_language_model(
        path,
        result.model,
        result.tokenizer,
        metrics=result.metrics,
        metadata={"tokenizer_options": TokenizerOptions().__dict__, "corpus": {"file": "x"}},
    )
    return path


def _fit(lm_path: Path, tmp_path: Path, **train: object) -> tuple[Classifier, Path]:
    init = load_language_model(lm_path)
    result = fit_classifier(
        make_examples(30, seed=1),
        make_examples(8, seed=2),
        model_options=ModelOptions(embedding_dim=99, hidden_size=99),  # the LM's win
        train_config=TrainConfig(**{"epochs": 3, "batch_size": 16, **train}),  # type: ignore[arg-type]
        init=init,
    )
    out = tmp_path / "clf"
    result.classifier.save(out, metrics=result.metrics)
    assert any("vocabulary of" in note for note in result.notes)
    return result.classifier, out


def test_a_classifier_from_an_lm_loads_predicts_and_records_its_lineage(
    lm_path: Path, tmp_path: Path
) -> None:
    clf, out = _fit(lm_path, tmp_path)
    init = load_language_model(lm_path)
    loaded = Classifier.load(out)
    assert loaded.tokenizer.vocab == init.tokenizer.vocab
    assert loaded.model.config.embedding_dim == 16 and loaded.model.config.hidden_size == 16
    assert loaded.metadata["init"]["language_model"] == init.digest
    fresh = make_examples(10, seed=99)
    predictions = loaded.predict([e.text for e in fresh])
    assert sum(p.label == e.label for p, e in zip(predictions, fresh, strict=True)) >= 7


def test_the_embedding_starts_as_the_lm_and_stays_frozen_for_the_first_epoch(
    lm_path: Path, tmp_path: Path
) -> None:
    init = load_language_model(lm_path)
    frozen, _ = _fit(lm_path, tmp_path, epochs=1, freeze_epochs=1, ema_decay=None)
    assert torch.equal(frozen.model.embedding.weight, init.model.embedding.weight)
    name = "lstm.forward_layers.0.weight_hh_l0"
    assert torch.equal(frozen.model.state_dict()[name], init.model.state_dict()[name])
    assert all(p.requires_grad for p in frozen.model.parameters())


def test_pretrained_layers_join_after_the_frozen_epochs_at_lower_rates() -> None:
    """The trainer itself: frozen for epoch 1, moving in epoch 2, the embedding slowest."""
    from textlstm.classifier.network import LSTMClassifier, LSTMConfig
    from textlstm.training.trainer import Callback, EncodedSplit, train

    torch.manual_seed(0)
    model = LSTMClassifier(LSTMConfig(vocab_size=20, num_classes=2, embedding_dim=8, hidden_size=8))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    snapshots: list[dict[str, torch.Tensor]] = []

    class Snapshot(Callback):
        def on_epoch_end(self, stats: object) -> None:
            snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    split = EncodedSplit([[2 + i % 9, 3, 4 + i % 7] for i in range(40)], [i % 2 for i in range(40)])
    config = TrainConfig(
        epochs=2,
        batch_size=8,
        ema_decay=None,
        schedule="constant",
        patience=9,
        freeze_epochs=1,
        pretrained_lr_scale=0.4,
    )
    train(
        model, split, split, config, num_classes=2, callbacks=[Snapshot()],
        pretrained=("embedding.", "lstm."),
    )  # fmt: skip
    first, second = snapshots
    assert torch.equal(first["embedding.weight"], start["embedding.weight"])
    assert torch.equal(first["lstm.forward_layers.0.weight_ih_l0"],
                       start["lstm.forward_layers.0.weight_ih_l0"])  # fmt: skip
    assert not torch.equal(first["head.weight"], start["head.weight"])
    assert not torch.equal(second["embedding.weight"], first["embedding.weight"])
    assert not torch.equal(second["lstm.forward_layers.0.weight_ih_l0"],
                           first["lstm.forward_layers.0.weight_ih_l0"])  # fmt: skip


def test_init_and_pretrained_vectors_exclude_each_other(lm_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass one"):
        fit_classifier(
            make_examples(5, seed=1),
            make_examples(2, seed=2),
            embeddings_path=tmp_path / "glove.txt",
            init=load_language_model(lm_path),
        )


def test_an_lm_whose_sizes_do_not_fit_is_refused(lm_path: Path) -> None:
    init = load_language_model(lm_path)
    object.__setattr__(init.model.config, "hidden_size", 15)  # a config that lies
    with pytest.raises(BundleError, match="does not fit"):
        fit_classifier(make_examples(5, seed=1), make_examples(2, seed=2), init=init)
