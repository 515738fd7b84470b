"""Shape, scheme and driver checks for the database and broker URLs, run when settings are read.

A URL mistake used to surface far from its cause: a traceback from SQLAlchemy's plugin loader
(`mysql://`), from a DBAPI import (`postgresql+pg8000://`), or, in the worker, one Celery
traceback per child process, restarted forever. These checks run in the `Settings` field
validators instead, so the mistake is reported once, as one line naming the variable, before
any engine or connection exists. They raise :class:`UrlError` (a ``ValueError``, so pydantic
collects it with the other settings' problems) whose message never contains the password: no
part of the URL but its scheme, driver or port number is echoed, since a password holding an
unencoded `/`, `#` or `@` lands in the path or the host where no masking can find it.

Pure apart from ``importlib.util.find_spec`` (is a driver installed?, without importing it) and
SQLAlchemy's URL parser (imported only when a database URL is given explicitly).
"""

from __future__ import annotations

import importlib.util
from urllib.parse import urlsplit

DATABASE_HINT = "use sqlite:///path or postgresql+psycopg://user:password@host:5432/db"
BROKER_HINT = (
    "use redis://host:6379/0, rediss://host:6380/0 or sentinel://host:26379;sentinel://host2:26379"
)
ENCODE_HINT = "a password holding / # ? @ or : must be percent-encoded"

#: Broker schemes accepted, with the module each needs. Redis (`redis`, `rediss`) is the
#: supported broker: the worker's loss-free transport, priorities, backpressure, the
#: dead-letter list and `textlstm-admin status` queue depths all read Redis. The others already
#: work for sending and consuming through kombu's own transports and are accepted so that
#: nothing that runs today is refused; the Redis-only features are unavailable on them.
#: `memory` is kombu's in-process transport, for tests.
BROKER_SCHEMES: dict[str, str | None] = {
    "redis": "redis",
    "rediss": "redis",
    "redis+socket": "redis",
    "sentinel": "redis",
    "amqp": "amqp",
    "amqps": "amqp",
    "pyamqp": "amqp",
    "memory": None,
}
_REDIS_LIKE = {"redis", "rediss", "sentinel"}

#: Database backend -> (the one driver textlstm runs on, the module that provides it).
#: PostgreSQL writes use psycopg 3's binary parameters (`%(name)b` in store/bulk_insert.py), so
#: no other PostgreSQL driver can work, installed or not.
_DRIVERS: dict[str, tuple[str, str]] = {
    "postgresql": ("psycopg", "psycopg"),
    "sqlite": ("pysqlite", "sqlite3"),
}
#: Driver name -> module, where they differ (to say whether an unsupported one is installed).
_DRIVER_MODULES = {"psycopg_async": "psycopg", "pysqlcipher": "sqlcipher3"}


class UrlError(ValueError):
    """A database or broker URL that cannot work; the message says why and what to use."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_database_url(url: str) -> None:
    """Raise UrlError unless `url` is a SQLite or psycopg 3 PostgreSQL URL whose driver is
    installed (`postgresql://` is rewritten to `postgresql+psycopg://` before this runs)."""
    if not url.strip():
        raise UrlError(f"is empty ({DATABASE_HINT})")
    from sqlalchemy.engine.url import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - ArgumentError, or ValueError for a bad port
        # Not echoed: a string that does not parse may hold a password where mask_url
        # cannot find it.
        raise UrlError(f"not a database URL ({DATABASE_HINT})") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in _DRIVERS:
        raise UrlError(f"unsupported database {backend!r} ({DATABASE_HINT})")
    wanted, module = _DRIVERS[backend]
    hint = (
        "use postgresql+psycopg://user:password@host:5432/db"
        if backend == "postgresql"
        else "use sqlite:///path"
    )
    driver = driver or wanted
    if driver != wanted:
        needs = "psycopg 3" if backend == "postgresql" else "Python's sqlite3"
        if _installed(_DRIVER_MODULES.get(driver, driver)):
            raise UrlError(f"driver {driver!r} is not supported: textlstm needs {needs} ({hint})")
        raise UrlError(
            f"driver {driver!r} is not installed, and textlstm needs {needs} anyway ({hint})"
        )
    if not _installed(module):
        raise UrlError(
            f"driver {driver!r} is not installed (pip install 'psycopg[binary]')"
            if backend == "postgresql"
            else "this Python has no sqlite3 module (use postgresql+psycopg://…)"
        )
    try:
        port = parsed.port
    except ValueError:  # pragma: no cover - make_url already refused it
        port = None
    if port is not None and not 0 < port < 65536:
        raise UrlError(f"port {port} is out of range ({hint})")


def check_broker_url(url: str) -> None:
    """Raise UrlError unless every `;`-separated URL in `url` (Celery's failover list) has an
    accepted scheme (BROKER_SCHEMES) with its client installed, and a Redis URL has a numeric
    port and database number."""
    if not url.strip():
        raise UrlError(f"is empty ({BROKER_HINT})")
    for one in url.split(";"):
        one = one.strip()
        scheme = one.partition("://")[0].lower() if "://" in one else ""
        if not scheme:
            raise UrlError(f"not a broker URL ({BROKER_HINT})")
        if scheme not in BROKER_SCHEMES:
            raise UrlError(f"unsupported broker {scheme!r} ({BROKER_HINT})")
        module = BROKER_SCHEMES[scheme]
        if module is not None and not _installed(module):
            raise UrlError(f"broker {scheme!r} needs the {module!r} package, not installed")
        if scheme not in _REDIS_LIKE:
            continue
        try:
            parts = urlsplit(one)
            parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
        except ValueError:
            raise UrlError(f"bad host or port ({ENCODE_HINT}; {BROKER_HINT})") from None
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise UrlError(
                f"the Redis database (after host:port/) must be a number ({ENCODE_HINT}; "
                f"{BROKER_HINT})"
            )
