"""Every bad-data error names the file, the line and the problem in one line."""

import json
from pathlib import Path

import pytest

from textlstm.errors import DataError
from textlstm.training.datasets import Example, read_texts, stratified_split


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_csv_tsv_jsonl_read_the_same(tmp_path: Path) -> None:
    rows = [("good film , really", "pos"), ('said "no"\nthen left', "neg")]
    csv_path = write(
        tmp_path,
        "d.csv",
        'label,text\r\npos,"good film , really"\r\nneg,"said ""no""\nthen left"\r\n',
    )
    tsv_path = write(
        tmp_path, "d.tsv", 'text\tlabel\ngood film , really\tpos\n"said ""no""\nthen left"\tneg\n'
    )
    jsonl_path = write(
        tmp_path,
        "d.jsonl",
        "\n".join(json.dumps({"text": t, "label": lbl}) for t, lbl in rows) + "\n",
    )
    for path in (csv_path, tsv_path, jsonl_path):
        data = read_texts(path)
        assert [(e.text, e.label) for e in data.examples] == rows, path
        assert len(data.fingerprint) == 64


def test_named_columns_and_line_numbers_after_multiline_field(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", 'body,y,extra\n"two\nlines",a,1\n"",b,2\n')
    with pytest.raises(DataError, match=r"d\.csv: line 4: empty text in column 'body'"):
        read_texts(path, text_column="body", label_column="y")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", r"empty\.csv: file is empty"),
        ("blank.csv", "  \n\n", r"blank\.csv: file is empty"),
        ("header.csv", "text,label\n", r"header\.csv: file has a header but no rows"),
        ("nolabel.csv", "text,category\nhi,x\n", r"nolabel\.csv: line 1: missing column 'label'"),
        ("emptytext.csv", "text,label\nok,a\n   ,b\n", r"emptytext\.csv: line 3: empty text"),
        ("emptylabel.csv", "text,label\nok,\n", r"emptylabel\.csv: line 2: empty label"),
        (
            "fields.csv",
            "text,label\nok,a,extra\n",
            r"fields\.csv: line 2: expected 2 fields, found 3",
        ),
        ("bad.jsonl", '{"text": "a", "label": "x"}\n{oops\n', r"bad\.jsonl: line 2: invalid JSON"),
        ("miss.jsonl", '{"text": "a"}\n', r"miss\.jsonl: line 1: missing field 'label'"),
        (
            "type.jsonl",
            '{"text": ["a"], "label": "x"}\n',
            r"type\.jsonl: line 1: field 'text' must be a string",
        ),
        ("data.xlsx", "x", r"data\.xlsx: unknown file type '\.xlsx'"),
    ],
)
def test_bad_files_raise_one_line_errors(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(DataError, match=message) as info:
        read_texts(path)
    assert "\n" not in str(info.value)


def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.csv", b"text,label\nfine,a\ncaf\xe9 au lait,b\n")
    with pytest.raises(
        DataError, match=r"latin\.csv: line 3: bytes are not valid UTF-8 \(byte 0xe9"
    ):
        read_texts(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_texts(tmp_path / "nope.csv")


def test_labels_optional_for_prediction_input(tmp_path: Path) -> None:
    path = write(tmp_path, "texts.csv", "text\nhello\nworld\n")
    assert read_texts(path, label_column=None).texts == ["hello", "world"]


def test_bom_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", "\ufefftext,label\nhi,a\n")
    assert read_texts(path).texts == ["hi"]


def examples(labels: list[str]) -> list[Example]:
    return [Example(f"text {i}", lbl, i + 2) for i, lbl in enumerate(labels)]


def test_stratified_split_keeps_label_shares_and_is_seeded() -> None:
    data = examples(["a"] * 80 + ["b"] * 20)
    train, val = stratified_split(data, fraction=0.1, seed=7)
    assert sorted(e.label for e in val) == ["a"] * 8 + ["b"] * 2
    assert len(train) + len(val) == 100
    assert {e.line for e in train}.isdisjoint({e.line for e in val})
    assert stratified_split(data, fraction=0.1, seed=7) == (train, val)
    assert stratified_split(data, fraction=0.1, seed=8) != (train, val)


def test_single_example_label_is_refused_when_stratifying() -> None:
    data = examples(["a", "a", "a", "rare"])
    with pytest.raises(DataError, match=r"train\.csv: line 5: label 'rare' has a single example"):
        stratified_split(data, fraction=0.2, seed=1, source="train.csv")
