import pytest
import torch

from textlstm.classifier.length_buckets import pad_batch
from textlstm.classifier.network import LSTMClassifier, LSTMConfig


@pytest.mark.parametrize(
    ("pooling", "skip"),
    [("last", False), ("max", False), ("mean", False), ("max", True), ("mean", True)],
)
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_padding_never_changes_a_texts_output(
    pooling: str, skip: bool, bidirectional: bool, num_layers: int
) -> None:
    torch.manual_seed(0)
    config = LSTMConfig(
        vocab_size=50,
        num_classes=3,
        embedding_dim=8,
        hidden_size=8,
        num_layers=num_layers,
        bidirectional=bidirectional,
        pooling=pooling,  # type: ignore[arg-type]
        embedding_skip=skip,
    )
    model = LSTMClassifier(config).eval()
    short = [5, 6, 7]
    long_texts = [list(range(2, 50)) * 3, list(range(3, 40)) * 2]  # 144 and 74 tokens

    with torch.inference_mode():
        alone = model(*pad_batch([short])).softmax(-1)
        ids, lengths = pad_batch([long_texts[0], short, long_texts[1]])
        assert ids.shape[1] == 144  # the short text is padded with 141 pad tokens
        batched = model(ids, lengths).softmax(-1)

    torch.testing.assert_close(batched[1], alone[0], rtol=0, atol=1e-6)


def test_output_shape_and_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    model = LSTMClassifier(LSTMConfig(vocab_size=20, num_classes=4, embedding_dim=8, hidden_size=8))
    ids, lengths = pad_batch([[2, 3], [4, 5, 6, 7]])
    model.eval()
    with torch.inference_mode():
        first, second = model(ids, lengths), model(ids, lengths)
    assert first.shape == (2, 4)
    assert torch.equal(first, second)
    model.train()
    assert not torch.equal(model(ids, lengths), model(ids, lengths))


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="pooling"):
        LSTMConfig(vocab_size=10, num_classes=2, pooling="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dropout"):
        LSTMConfig(vocab_size=10, num_classes=2, output_dropout=1.0)
    config = LSTMConfig(vocab_size=10, num_classes=2)
    assert LSTMConfig.from_dict(config.to_dict()) == config
