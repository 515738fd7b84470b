"""Model references (`name`, `name@3`, `name@production`): parsing and naming rules.

Pure and dependency-free so the producer can reject a malformed reference before it enqueues
anything, and the registry and workers agree on what a reference means. Parsing is total: any
value gives a ModelRef or raises ValidationError, and every accepted reference fits the columns
it is stored in (textlstm/wire/limits.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from textlstm.errors import ValidationError
from textlstm.wire.limits import (
    MODEL_ALIAS_CHARS,
    MODEL_NAME_CHARS,
    MODEL_REF_CHARS,
    MODEL_VERSION_DIGITS,
    MODEL_VERSION_MAX,
)

# Used with fullmatch: `$` also matches before a trailing newline, so `re.match` with `^…$`
# let "name\n" through. The classes are explicit ASCII ranges (never \w or \d, which take any
# Unicode letter or digit).
NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MODEL_NAME_CHARS - 1}}}")
# Aliases must start with a letter so `name@3` is always a version, never an alias.
ALIAS_RE = re.compile(rf"[A-Za-z][A-Za-z0-9._-]{{0,{MODEL_ALIAS_CHARS - 1}}}")
# ASCII digits only: str.isdigit() is also true for '²' or '٣', which int() then refuses.
VERSION_RE = re.compile(rf"[0-9]{{1,{MODEL_VERSION_DIGITS}}}")
DEFAULT_ALIAS = "production"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: exactly one of `version` / `alias` is set, or neither (bare name)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(
            f"invalid model name {name!r:.80}: use 1-{MODEL_NAME_CHARS} letters, digits, '.', "
            "'_' or '-', starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias):
        raise ValidationError(
            f"invalid alias {alias!r:.80}: use 1-{MODEL_ALIAS_CHARS} letters, digits, '.', '_' "
            "or '-', starting with a letter"
        )
    return alias


def parse_model_ref(ref: str) -> ModelRef:
    """Parse `name`, `name@<version>` or `name@<alias>`; raise ValidationError otherwise."""
    if not isinstance(ref, str):
        raise ValidationError(f"model reference must be a string, got {type(ref).__name__}")
    if len(ref) > MODEL_REF_CHARS:  # before the cache hashes (and keeps) a long string
        raise ValidationError(
            f"model reference is {len(ref)} characters; the limit is {MODEL_REF_CHARS}"
        )
    return _parse_ref(ref)


@lru_cache(maxsize=1024)
def _parse_ref(ref: str) -> ModelRef:
    """Cached: every job and every envelope part names its model, and a service sees few
    distinct references (2.7 of a producer's ~70 µs per one-text job went to parsing it)."""
    name, sep, tail = ref.partition("@")
    check_name(name)
    if not sep:
        return ModelRef(name)
    if tail[:1].isdigit():  # any Unicode digit: a version or nothing (aliases start a letter)
        if not VERSION_RE.fullmatch(tail) or not 1 <= int(tail) <= MODEL_VERSION_MAX:
            raise ValidationError(
                f"invalid model reference {ref!r:.80}: a version is 1 to {MODEL_VERSION_MAX} "
                "in ASCII digits (versions start at 1)"
            )
        return ModelRef(name, version=int(tail))
    if not ALIAS_RE.fullmatch(tail):
        raise ValidationError(
            f"invalid model reference {ref!r:.80}: expected name, name@VERSION or name@ALIAS"
        )
    return ModelRef(name, alias=tail)
