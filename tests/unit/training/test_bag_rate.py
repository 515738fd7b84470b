"""The n-gram bag's learning rate follows the training texts' length (short: the LSTM's rate)."""

import pytest

from textlstm.training.config import TrainConfig


def test_long_texts_get_the_long_scale_and_short_texts_the_short_one() -> None:
    config = TrainConfig(ngram_lr_scale=10.0, ngram_lr_scale_short=1.0, ngram_short_tokens=32)
    assert config.bag_lr_scale(281.0) == 10.0
    assert config.bag_lr_scale(32.0) == 10.0
    assert config.bag_lr_scale(19.5) == 1.0


def test_a_non_positive_bag_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        TrainConfig(ngram_lr_scale_short=0.0)
