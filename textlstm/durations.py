"""Durations written the way operators write them: `90s`, `15m`, `12h`, `30d`, `2w`.

Shared by the settings (TEXTLSTM_RETENTION_PURGE_AFTER) and the CLI (`jobs purge --older-than`),
so a value means the same in both places. Pure: no I/O, importable everywhere.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from textlstm.errors import ValidationError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
#: timedelta's own limit is 999,999,999 days; far beyond any retention period anyone means.
MAX_DAYS = 100 * 366


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w` or `1.5d` -> timedelta; ValidationError (one line) else.

    A unit is required: a bare `30` is refused rather than guessed (seconds? days?), since the
    value decides what a purge deletes.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValidationError(f"{text!r} is not a duration like 30d, 12h, 90m or 45s")
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds > MAX_DAYS * 86400:
        raise ValidationError(f"duration {text!r} is longer than {MAX_DAYS} days")
    return timedelta(seconds=seconds)
