"""Item 7: the operations docs list every setting with its real default."""

from __future__ import annotations

import re
from pathlib import Path

from textlstm.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "README.md"


def test_settings_table_lists_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `TEXTLSTM_([A-Z0-9_]+)` \| ([^|]+) \|", DOC.read_text(), re.M))
    fields = Settings.model_fields
    assert set(rows) == {name.upper() for name in fields}
    for name, field in fields.items():
        shown = rows[name.upper()].strip()
        default = field.default
        if default in (None, ""):
            assert shown.startswith(("unset", "all visible")), (name, shown)
        elif isinstance(default, Path):
            assert shown == f"`{default}`", (name, shown)
        else:
            text = f"{default:g}" if isinstance(default, float) else str(default)
            assert shown.split()[0].strip("`") == text, (name, shown, text)
