"""textlstm.durations and the one setting that uses it (TEXTLSTM_RETENTION_PURGE_AFTER)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from textlstm.durations import parse_duration
from textlstm.errors import SettingsError, ValidationError
from textlstm.settings import Settings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("90m", 5400), ("12h", 43200), ("30d", 2592000), ("2w", 1209600),
     (" 1.5D ", 129600), ("0s", 0)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "1y", "1e9d", "nan", "inf d", "99999999d"])
def test_bad_durations_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_duration(text)
    assert "\n" not in str(info.value)


def test_retention_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTLSTM_RETENTION_PURGE_AFTER", "30d")
    monkeypatch.setenv("TEXTLSTM_RETENTION_PURGE_INTERVAL_S", "600")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.retention_purge_after == timedelta(days=30)
    assert s.retention_purge_interval_s == 600 and s.retention_batch_rows == 5000
    monkeypatch.setenv("TEXTLSTM_RETENTION_PURGE_AFTER", "")
    assert Settings(_env_file=None).retention_purge_after is None  # type: ignore[call-arg]
    monkeypatch.delenv("TEXTLSTM_RETENTION_PURGE_AFTER")
    assert Settings(_env_file=None).retention_purge_after is None  # type: ignore[call-arg]
    for bad, says in (("30", "not a duration"), ("0d", "more than 0")):
        monkeypatch.setenv("TEXTLSTM_RETENTION_PURGE_AFTER", bad)
        with pytest.raises(SettingsError, match=f"TEXTLSTM_RETENTION_PURGE_AFTER: .*{says}"):
            Settings(_env_file=None)  # type: ignore[call-arg]
