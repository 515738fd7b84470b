"""Readers for labelled text files (CSV, TSV, JSONL) and the stratified validation split.

Every problem a user can fix is raised as DataError naming the file, the line and the problem;
nothing here prints or exits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from textlstm.errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class Example:
    text: str
    label: str | None
    line: int  # 1-based line in the source file where the record starts, for error messages


@dataclass(frozen=True)
class Dataset:
    path: str
    examples: list[Example]
    fingerprint: str  # sha256 of the file bytes: lineage recorded in the bundle

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.examples if e.label is not None]


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"{path}: unknown file type {path.suffix!r} (expected one of {known})")
    return fmt


def _decode(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line}: bytes are not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
            f"offset {exc.start}); re-save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _delimited_records(
    path: Path, text: str, delimiter: str, columns: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: file is empty (expected a header line)") from None
    except csv.Error as exc:
        raise DataError(f"{path}: line 1: malformed header ({exc})") from None
    header = [h.strip() for h in header]
    for col in columns:
        if col not in header:
            found = ", ".join(repr(h) for h in header)
            raise DataError(f"{path}: line 1: missing column {col!r} (header has {found})")
    positions = {col: header.index(col) for col in columns}
    line = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path}: line {line}: malformed row ({exc})") from None
        start, line = line, reader.line_num + 1
        if not row:
            continue  # blank line
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {start}: expected {len(header)} fields, found {len(row)}"
            )
        yield start, {col: row[pos] for col, pos in positions.items()}


def _jsonl_records(
    path: Path, text: str, columns: Sequence[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    for number, raw_line in enumerate(text.splitlines(), start=1):
        if not raw_line.strip():
            continue
        try:
            obj = json.loads(raw_line)
        except ValueError as exc:
            raise DataError(f"{path}: line {number}: invalid JSON ({exc.args[0]})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {number}: expected a JSON object")
        record: dict[str, str] = {}
        for col in columns:
            if col not in obj:
                raise DataError(f"{path}: line {number}: missing field {col!r}")
            value = obj[col]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise DataError(
                    f"{path}: line {number}: field {col!r} must be a string, "
                    f"not {type(value).__name__}"
                )
            record[col] = str(value)
        yield number, record


def read_texts(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str | None = "label",
) -> Dataset:
    """Read a CSV/TSV/JSONL file. With `label_column=None` labels are not required or read."""
    p = Path(path)
    fmt = detect_format(p)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a directory, expected a file") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror})") from None
    text = _decode(p, raw)
    if not text.strip():
        raise DataError(f"{p}: file is empty")
    columns = [text_column] if label_column is None else [text_column, label_column]
    if fmt == "jsonl":
        records = _jsonl_records(p, text, columns)
    else:
        records = _delimited_records(p, text, "," if fmt == "csv" else "\t", columns)
    examples: list[Example] = []
    for line, record in records:
        value = record[text_column]
        if not value.strip():
            raise DataError(f"{p}: line {line}: empty text in column {text_column!r}")
        label = None
        if label_column is not None:
            label = record[label_column].strip()
            if not label:
                raise DataError(f"{p}: line {line}: empty label in column {label_column!r}")
        examples.append(Example(value, label, line))
    if not examples:
        raise DataError(f"{p}: file has a header but no rows")
    return Dataset(str(p), examples, hashlib.sha256(raw).hexdigest())


def stratified_split(
    examples: Sequence[Example], *, fraction: float, seed: int, source: str = "training data"
) -> tuple[list[Example], list[Example]]:
    """Split into (train, validation) keeping each label's share; deterministic for a seed.

    Every label needs at least two examples so it can appear on both sides.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction must be between 0 and 1, not {fraction}")
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_label[str(ex.label)].append(ex)
    rng = random.Random(seed)
    train: list[Example] = []
    val: list[Example] = []
    for label in sorted(by_label):
        group = by_label[label]
        if len(group) < 2:
            raise DataError(
                f"{source}: line {group[0].line}: label {label!r} has a single example; a "
                "stratified validation split needs at least 2 per label "
                "(add examples or pass --val-file)"
            )
        group = group[:]
        rng.shuffle(group)
        n_val = min(len(group) - 1, max(1, round(len(group) * fraction)))
        val.extend(group[:n_val])
        train.extend(group[n_val:])
    train.sort(key=lambda e: e.line)
    val.sort(key=lambda e: e.line)
    return train, val
