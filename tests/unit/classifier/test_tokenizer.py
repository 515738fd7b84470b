from hypothesis import given
from hypothesis import strategies as st

from textlstm.classifier.tokenizer import PAD, UNK, UNK_ID, Tokenizer


def test_build_orders_by_frequency_then_alphabet_and_reserves_pad_unk() -> None:
    tok = Tokenizer.build(["b a b c", "c b"], min_freq=1)
    assert tok.vocab == [PAD, UNK, "b", "c", "a"]


def test_min_freq_and_max_size() -> None:
    texts = ["x x x y y z"]
    assert Tokenizer.build(texts, min_freq=2).vocab == [PAD, UNK, "x", "y"]
    assert Tokenizer.build(texts, max_size=3).vocab == [PAD, UNK, "x"]


def test_normalisation_lowercase_and_punctuation_split() -> None:
    tok = Tokenizer.build(["x"])
    # NFKC folds the ligature and full-width letters; punctuation is its own token.
    assert tok.tokenize("Ｈｅｌｌｏ, ﬁne World!") == ["hello", ",", "fine", "world", "!"]


def test_unknown_words_and_truncation() -> None:
    tok = Tokenizer.build(["good movie"])
    assert tok.encode("good unseen movie") == [tok.token_id("good"), UNK_ID, tok.token_id("movie")]
    assert tok.encode("good movie good movie", max_length=2) == tok.encode("good movie")
    assert tok.encode("   \t\n") == []


def test_json_round_trip_gives_identical_ids() -> None:
    texts = ["The cat sat.", "Dogs run; cats sit!", "naïve café"]
    tok = Tokenizer.build(texts)
    again = Tokenizer.from_json(tok.to_json())
    assert again.vocab == tok.vocab
    for text in [*texts, "unseen words here"]:
        assert again.encode(text) == tok.encode(text)


@given(st.lists(st.text(max_size=40), min_size=1, max_size=8), st.text(max_size=60))
def test_ids_always_in_range_and_deterministic(corpus: list[str], text: str) -> None:
    tok = Tokenizer.build(corpus)
    ids = tok.encode(text)
    assert ids == Tokenizer.from_json(tok.to_json()).encode(text)
    assert all(0 < i < len(tok) for i in ids)  # never <pad>
