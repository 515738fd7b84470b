"""Bearer tokens for the gateway: stored as sha256 digests, checked in constant time.

Pure functions (no FastAPI, no I/O), so the settings validator and `textlstm-admin api-token`
use them on the base install. Only digests live in TEXTLSTM_API_TOKENS: a leaked settings file
or process environment does not hand out working tokens. A token is a random 32-byte string,
so a plain sha256 (not a slow password hash) is enough: nothing is guessable to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

#: What a scope allows: `submit` includes `read` (a producer reads back what it sent).
SCOPES: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "submit": frozenset({"read", "submit"}),
}
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TokenEntry:
    """One accepted token: its sha256 hex digest and its scope (`read` or `submit`)."""

    digest: str
    scope: str


def hash_token(token: str) -> str:
    """The sha256 hex digest of `token` (UTF-8), as TEXTLSTM_API_TOKENS holds it."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (32 bytes, URL-safe base64)."""
    return secrets.token_urlsafe(32)


def parse_tokens(value: str) -> tuple[TokenEntry, ...]:
    """`<digest>:<scope>,…` into entries; ValueError names a bad entry by its position only
    (the digest is not echoed: the message may reach a log)."""
    entries: list[TokenEntry] = []
    for n, raw in enumerate((p.strip() for p in value.split(",")), start=1):
        if raw:
            entries.append(_entry(raw, f"entry {n}"))
    return tuple(entries)


def parse_token_lines(text: str) -> tuple[TokenEntry, ...]:
    """A tokens file (TEXTLSTM_API_TOKENS_FILE, a Docker secret): one `<digest>:<scope>` a
    line; blank lines and `#` comments are skipped. ValueError names the bad line's number,
    never its text (a token pasted by mistake in place of its entry stays out of the log)."""
    entries: list[TokenEntry] = []
    for n, line in enumerate(text.splitlines(), start=1):
        raw = line.partition("#")[0].strip()
        if raw:
            entries.append(_entry(raw, f"line {n}"))
    return tuple(entries)


def _entry(raw: str, where: str) -> TokenEntry:
    digest, sep, scope = raw.partition(":")
    digest, scope = digest.strip().lower(), scope.strip()
    if not sep or not _DIGEST.fullmatch(digest):
        raise ValueError(
            f"{where} must be <sha256 hex digest of the token (64 characters)>:<scope> "
            "(textlstm-admin api-token prints one)"
        )
    if scope not in SCOPES:
        raise ValueError(f"{where}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    return TokenEntry(digest, scope)


def authenticate(token: str, entries: tuple[TokenEntry, ...]) -> TokenEntry | None:
    """The entry `token` matches, or None. Every entry is compared (hmac.compare_digest), so
    the time taken does not tell which entry, or how much of a digest, matched."""
    digest = hash_token(token)
    found: TokenEntry | None = None
    for entry in entries:
        if hmac.compare_digest(digest, entry.digest) and found is None:
            found = entry
    return found


def allows(entry: TokenEntry, needed: str) -> bool:
    """True when `entry`'s scope covers the `needed` one (`read` or `submit`)."""
    return needed in SCOPES[entry.scope]
