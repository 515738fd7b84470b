"""Per-micro-batch stage timings as structured records: one schema, one writer, one reader.

The worker's human log line (`batch size=… forward_ms=…`) is for operators and may change
wording at any time. Anything that needs the numbers (tests counting batches, the benchmarks'
stage split and mean formed batch) reads these records instead: with
`TEXTLSTM_WORKER_STATS_DIR` set, each worker process appends one JSON line per micro-batch to
`<dir>/<hostname>-<pid>.jsonl` (`StatsWriter`), and `read_stats` / `StatsTail` read them back.

One file per process, so lines of two processes never interleave; each line is one `write(2)`
on an `O_APPEND` descriptor (no user-space buffer), so a SIGKILLed worker leaves whole lines,
and at worst a torn last line if the disk filled up mid-write, which the reader skips. The
module is pure: no database, broker or model import, so benchmarks and tests can load it cheaply.

Compatibility: fields are only ever added (with a default), which keeps `SCHEMA_VERSION`;
a reader ignores fields it does not know. Removing or redefining a field bumps the version, and
`BatchStats.from_json` refuses a version it does not know rather than misread it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time as clock
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

#: Version of the record layout; see the module docstring for when it changes.
SCHEMA_VERSION = 1
#: File name suffix of a stats file (`<hostname>-<pid>.jsonl`).
SUFFIX = ".jsonl"


class _Report(Protocol):
    """What `from_report` reads: `textlstm.serving.service.BatchReport`'s fields (a protocol,
    so this module needs no import of the service and its database layer)."""

    @property
    def model_ref(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def items(self) -> int: ...
    @property
    def messages(self) -> int: ...
    @property
    def tokens(self) -> int: ...
    @property
    def ok(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def inserted(self) -> int: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def expired(self) -> int: ...
    @property
    def forward_ms(self) -> float: ...
    @property
    def tokenize_ms(self) -> float: ...
    @property
    def db_ms(self) -> float: ...
    @property
    def db_attempts(self) -> int: ...


@dataclass(frozen=True)
class BatchStats:
    """What one micro-batch did and where its time went, in one worker process.

    Times are milliseconds of that batch: `forward_ms` is the whole model step with its
    tokenizing (`tokenize_ms`) included; `decode_ms` is decoding and validating the messages
    received since the previous batch; `fetch_ms` is popping them from Redis; `db_ms` the
    write with its retries (`db_attempts`). `time` is the Unix time the batch was done.
    """

    items: int
    messages: int
    model_ref: str
    model: str | None  # exact name@version; None when the model was unavailable
    ok: int
    errors: int
    forward_ms: float
    db_ms: float
    tokens: int = 0
    inserted: int = 0
    duplicates: int = 0
    expired: int = 0
    tokenize_ms: float = 0.0
    decode_ms: float = 0.0
    fetch_ms: float = 0.0
    db_attempts: int = 1
    host: str = ""
    pid: int = 0
    time: float = 0.0
    #: Which consumer formed the batch: "microbatch" (the worker), or a benchmark variant.
    source: str = "microbatch"
    v: int = SCHEMA_VERSION

    @classmethod
    def from_report(
        cls,
        report: _Report,
        *,
        decode_ms: float = 0.0,
        fetch_ms: float = 0.0,
        source: str = "microbatch",
    ) -> BatchStats:
        """The record of a `BatchReport`, stamped with this host, process and time."""
        return cls(
            items=report.items,
            messages=report.messages,
            model_ref=report.model_ref,
            model=report.model,
            ok=report.ok,
            errors=report.errors,
            forward_ms=report.forward_ms,
            db_ms=report.db_ms,
            tokens=report.tokens,
            inserted=report.inserted,
            duplicates=report.duplicates,
            expired=report.expired,
            tokenize_ms=report.tokenize_ms,
            decode_ms=decode_ms,
            fetch_ms=fetch_ms,
            db_attempts=report.db_attempts,
            host=socket.gethostname(),
            pid=os.getpid(),
            time=clock.time(),
            source=source,
        )

    def to_json(self) -> str:
        """One line of JSON (no newline), keys in field order."""
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, line: str | bytes) -> BatchStats:
        """Parse one record; unknown keys are ignored (a newer writer that only added fields).

        Raises ValueError for anything that is not a record of a known schema version.
        """
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError(f"not a stats record: {str(line)[:200]!r}")
        version = data.get("v")
        if version != SCHEMA_VERSION:
            raise ValueError(f"stats record of schema version {version!r}, not {SCHEMA_VERSION}")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:  # a required field missing
            raise ValueError(f"not a stats record: {exc}") from None


def stats_path(directory: Path, pid: int | None = None) -> Path:
    """This process's stats file in `directory`: `<hostname>-<pid>.jsonl`."""
    host = socket.gethostname().replace(os.sep, "_") or "host"
    return directory / f"{host}-{os.getpid() if pid is None else pid}{SUFFIX}"


class StatsWriter:
    """Appends records to this process's file in `directory`, one `write(2)` per record.

    The file is opened on first use and again if the process has forked since (a new pid:
    a new file), so one writer made before a fork never mixes two processes' lines.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None
        self._pid = 0
        self._failed = False

    def write(self, record: BatchStats) -> None:
        """Append `record`; an OSError (disk full, directory gone) is logged once and the work
        goes on: stats must never stop a worker."""
        data = (record.to_json() + "\n").encode()
        try:
            if self._fd is None or self._pid != os.getpid():
                self._open()
            assert self._fd is not None
            os.write(self._fd, data)
        except OSError as exc:
            if not self._failed:
                log.error("could not write batch stats to %s: %s", self.directory, exc)
            self._failed = True

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pid = os.getpid()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(stats_path(self.directory, self._pid), flags, 0o644)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def stats_files(path: Path) -> list[Path]:
    """`path` itself if it is a file, else the stats files in it, sorted by name."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.suffix == SUFFIX and p.is_file())


def _records(chunk: bytes, where: Path) -> Iterator[BatchStats]:
    for n, line in enumerate(chunk.splitlines(), 1):
        if line.strip():
            try:
                yield BatchStats.from_json(line)
            except ValueError as exc:
                raise ValueError(f"{where}: line {n}: {exc}") from None


def _complete(chunk: bytes) -> bytes:
    """The whole lines of `chunk`: a last line without its newline is torn (a writer killed
    mid-write, or one still writing) and left out."""
    return chunk[: chunk.rfind(b"\n") + 1]


def read_stats(path: Path) -> Iterator[BatchStats]:
    """Every record in a stats file, or in every stats file of a folder (file by file, each in
    the order written), skipping a torn last line. A missing path yields nothing."""
    for file in stats_files(path):
        yield from _records(_complete(file.read_bytes()), file)


class StatsTail:
    """The records appended to a stats folder since the tail was made (or last read).

    Made before a run starts, `new()` returns only that run's records, however many earlier
    runs the folder holds; a torn or half-written last line is read on a later call, once its
    newline is there.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pos = {p: p.stat().st_size for p in stats_files(directory)}

    def new(self) -> list[BatchStats]:
        out: list[BatchStats] = []
        for file in stats_files(self.directory):
            start = self.pos.get(file, 0)
            with file.open("rb") as fh:
                fh.seek(start)
                chunk = _complete(fh.read())
            self.pos[file] = start + len(chunk)
            out.extend(_records(chunk, file))
        return out


def mean_batch(records: Iterable[BatchStats]) -> float | None:
    """Mean items per micro-batch, None when there is no record."""
    sizes = [r.items for r in records]
    return sum(sizes) / len(sizes) if sizes else None
