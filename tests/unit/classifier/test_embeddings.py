from pathlib import Path

import numpy as np
import pytest

from textlstm.classifier.embeddings import load_vectors
from textlstm.classifier.tokenizer import Tokenizer
from textlstm.errors import DataError


def test_vectors_fill_known_words_and_report_coverage(tmp_path: Path) -> None:
    tok = Tokenizer.build(["goal team bank unknownword"])
    path = tmp_path / "vectors.txt"
    path.write_text("3 2\ngoal 1.0 2.0\nTeam 3.0 4.0\nbank 5.0 6.0\nelsewhere 7.0 8.0\n")
    vectors = load_vectors(path, tok)
    assert vectors.matrix.shape == (len(tok), 2)
    np.testing.assert_array_equal(vectors.matrix[tok.token_id("team")], [3.0, 4.0])
    np.testing.assert_array_equal(vectors.matrix[0], [0.0, 0.0])  # <pad> stays zero
    assert vectors.found == 3 and vectors.coverage == pytest.approx(3 / 4)


def test_ragged_vectors_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("a 1 2 3\nb 1 2\n")
    with pytest.raises(DataError, match=r"bad\.txt: line 2: vector has 2 values, expected 3"):
        load_vectors(path, Tokenizer.build(["a b"]))
