"""Initialise the embedding layer from a user's GloVe / word2vec text file.

The file is read line by line and only vectors for words in the vocabulary are kept, so a
multi-GB GloVe file costs one pass and vocabulary-sized memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textlstm.classifier.tokenizer import Tokenizer
from textlstm.errors import DataError


@dataclass(frozen=True)
class PretrainedVectors:
    matrix: np.ndarray  # (vocab_size, dim) float32; rows without a vector are random
    found: int  # vocabulary tokens (excluding <pad>, <unk>) that had a vector
    vocab_size: int

    @property
    def coverage(self) -> float:
        return self.found / max(1, self.vocab_size - 2)


def load_vectors(path: str | Path, tokenizer: Tokenizer, *, seed: int = 13) -> PretrainedVectors:
    """Read `word v1 v2 …` lines (an optional word2vec `count dim` header is skipped)."""
    p = Path(path)
    rng = np.random.default_rng(seed)
    matrix: np.ndarray | None = None
    found: set[int] = set()
    dim = None
    try:
        fh = p.open(encoding="utf-8", errors="strict")
    except OSError as exc:
        raise DataError(f"{p}: cannot read embeddings ({exc.strerror})") from None
    with fh:
        try:
            for number, line in enumerate(fh, start=1):
                parts = line.rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(x.isdigit() for x in parts):
                    continue  # word2vec header
                if len(parts) < 2:
                    continue
                if dim is None:
                    dim = len(parts) - 1
                    matrix = rng.normal(0.0, 0.1, (len(tokenizer), dim)).astype(np.float32)
                    matrix[0] = 0.0
                if len(parts) - 1 != dim:
                    raise DataError(
                        f"{p}: line {number}: vector has {len(parts) - 1} values, expected {dim}"
                    )
                word = tokenizer.tokenize(parts[0])
                token = word[0] if len(word) == 1 else parts[0]
                idx = tokenizer.token_id(token)
                if idx > 1 and matrix is not None:
                    try:
                        matrix[idx] = np.asarray(parts[1:], dtype=np.float32)
                    except ValueError:
                        raise DataError(
                            f"{p}: line {number}: vector has non-numeric values"
                        ) from None
                    found.add(idx)
        except UnicodeDecodeError:
            raise DataError(f"{p}: embeddings file is not valid UTF-8") from None
    if matrix is None:
        raise DataError(f"{p}: no vectors found in embeddings file")
    return PretrainedVectors(matrix=matrix, found=len(found), vocab_size=len(tokenizer))
