"""MkDocs hook: generated reference pages, so they cannot drift from the code.

A page that contains ``<!-- generated: settings -->`` gets, in its place, the table of every
``TEXTLSTM_*`` setting, built from ``textlstm.settings.Settings``: the field names, types,
constraints and defaults come from ``Settings.model_fields``, the descriptions from the ``#:``
comments above each field in ``textlstm/settings.py`` (or a ``Field(description=...)``), and the
groups from its ``# -- name --`` section comments. The CLI reference is rendered by mkdocs-click
from the Click group itself (``docs/reference/cli.md``).
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Any

MARKER = "<!-- generated: settings -->"
CLI_PAGE = "reference/cli.md"
_ROW = re.compile(r"<tr>.*?</tr>", re.S)
_UNSET = "<td><code>Sentinel.UNSET</code></td>"

_FIELD = re.compile(r"^    ([a-z_][a-z0-9_]*)\s*:")
_DOC = re.compile(r"^    #: ?(.*)$")
_SECTION = re.compile(r"^    # -- (.+?)\s*-*\s*$")
_SOURCE_REF = re.compile(r"\s*\([^)]*\.md[^)]*\)")


def settings_comments() -> tuple[dict[str, str], dict[str, str]]:
    """Each field's ``#:`` comment and section, read from the source of ``Settings``.

    A field with no comment of its own, written on the line right after another field, shares
    that field's comment (``worker_db_retry_initial_s`` / ``worker_db_retry_max_s``).
    """
    from textlstm.settings import Settings

    lines = inspect.getsource(Settings).splitlines()
    docs: dict[str, str] = {}
    sections: dict[str, str] = {}
    pending: list[str] = []
    section = "Database, broker, queue and limits"
    previous: str | None = None
    for line in lines:
        if m := _SECTION.match(line):
            section = _SOURCE_REF.sub("", m.group(1)).strip().capitalize()
            pending, previous = [], None
        elif m := _DOC.match(line):
            pending.append(m.group(1).strip())
        elif m := _FIELD.match(line):
            name = m.group(1)
            if name == "model_config":
                continue
            if pending:
                docs[name] = " ".join(pending)
            elif previous is not None:
                docs[name] = docs.get(previous, "")
            sections[name] = section
            pending, previous = [], name
        elif not line.strip() or line.strip().startswith(("@", "def ")):
            pending, previous = [], None
    return docs, sections


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " | ".join(_type_name(a) for a in args) + " (optional)"
    if isinstance(annotation, type):
        return {
            "str": "string",
            "int": "integer",
            "float": "number",
            "Path": "path",
            "timedelta": "duration",
        }.get(annotation.__name__, annotation.__name__)
    return str(annotation)


def _constraints(field: Any) -> str:
    parts = []
    for item in field.metadata:
        for attr, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(
                    f"{symbol} {value:,}" if isinstance(value, int) else f"{symbol} {value}"
                )
        pattern = getattr(item, "pattern", None)
        if pattern:
            parts.append(f"matches `{pattern}`")
    return ", ".join(parts)


def _default(field: Any) -> str:
    default = field.default
    if default is None or default == "":
        return "unset"
    if isinstance(default, float):
        return f"`{default:g}`"
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    """The settings reference: one table per section of ``Settings``, one row per field."""
    from textlstm.settings import Settings

    docs, sections = settings_comments()
    out: list[str] = []
    current = None
    for name, field in Settings.model_fields.items():
        section = sections.get(name, "Other")
        if section != current:
            current = section
            out += [
                "",
                f"## {section}",
                "",
                "| Variable | Type | Default | Meaning |",
                "|---|---|---|---|",
            ]
        description = field.description or docs.get(name, "")
        kind = _type_name(field.annotation)
        limits = _constraints(field)
        if limits:
            kind += f" ({limits})"
        out.append(
            f"| `TEXTLSTM_{name.upper()}` | {_cell(kind)} | {_cell(_default(field))} "
            f"| {_cell(description)} |"
        )
    return "\n".join(out).strip() + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, settings_markdown())
    return markdown


def _unset_default(match: re.Match[str]) -> str:
    row = match.group(0)
    if _UNSET not in row:
        return row
    flag = re.search(r"</td>\s*<td>boolean</td>", row) is not None
    return row.replace(_UNSET, "<td><code>False</code></td>" if flag else "<td>None</td>")


def on_page_content(content: str, page: Any, config: Any, files: Any) -> str:
    # mkdocs-click 0.9 prints Click >= 8.3's "no default" sentinel as `Sentinel.UNSET`; show it
    # as older Clicks did (False for a flag, None otherwise). Harmless once mkdocs-click is fixed.
    if page.file.src_uri == CLI_PAGE:
        content = _ROW.sub(_unset_default, content)
    return content


if __name__ == "__main__":  # print the generated table: python docs/hooks/reference.py
    import sys

    sys.stdout.write(settings_markdown())
