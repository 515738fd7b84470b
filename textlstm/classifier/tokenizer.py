"""Word-level tokenizer: NFKC normalisation, lower-casing, word/punctuation split, vocabulary.

Hand-written rather than Hugging Face `tokenizers`: for a word-level vocabulary the regex +
dict lookup measured faster here (see bench/tokenizer.py and bench/results/tokenizer.md), and it
has no native dependency. The vocabulary is built from the training split only and saved as JSON
inside the bundle, so inference needs nothing downloaded.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1

# A token is a run of word characters or a single other non-space character (punctuation).
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def normalize(text: str, *, lowercase: bool = True) -> str:
    text = unicodedata.normalize("NFKC", text)
    return text.lower() if lowercase else text


@dataclass
class Tokenizer:
    """Maps text to token ids. `vocab` lists tokens by id; ids 0 and 1 are `<pad>`, `<unk>`."""

    vocab: list[str]
    lowercase: bool = True
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.vocab[:2] != [PAD, UNK]:
            raise ValueError("vocabulary must start with <pad>, <unk>")
        self._index = {tok: i for i, tok in enumerate(self.vocab)}
        if len(self._index) != len(self.vocab):
            raise ValueError("vocabulary has duplicate tokens")

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        lowercase: bool = True,
    ) -> Tokenizer:
        """Vocabulary of tokens seen at least `min_freq` times, most frequent first.

        Ties are broken alphabetically so the same data always gives the same ids.
        """
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(_TOKEN_RE.findall(normalize(text, lowercase=lowercase)))
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            ranked = ranked[: max(0, max_size - 2)]
        return cls([PAD, UNK, *ranked], lowercase=lowercase)

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN_RE.findall(normalize(text, lowercase=self.lowercase))

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Token ids, truncated to the first `max_length` tokens; [] for blank text."""
        tokens = self.tokenize(text)
        return self.ids(tokens if max_length is None else tokens[:max_length])

    def ids(self, tokens: Iterable[str]) -> list[int]:
        get = self._index.get
        return [get(tok, UNK_ID) for tok in tokens]

    def token_id(self, token: str) -> int:
        return self._index.get(token, UNK_ID)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "word",
            "normalization": "NFKC",
            "lowercase": self.lowercase,
            "pattern": _TOKEN_RE.pattern,
            "vocab": self.vocab,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tokenizer:
        if data.get("type") != "word" or data.get("pattern") != _TOKEN_RE.pattern:
            raise ValueError(f"unsupported tokenizer: type={data.get('type')!r}")
        return cls(list(data["vocab"]), lowercase=bool(data.get("lowercase", True)))
