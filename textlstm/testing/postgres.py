"""PostgreSQL for tests and benchmarks: a throwaway database on a shared server, or a private
cluster that a test may stop and start (a database restart must not touch the shared server).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from textlstm.testing.ports import free_port


def _admin_engine(admin_url: str):  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(admin_url, isolation_level="AUTOCOMMIT")


def create_database(admin_url: str, prefix: str = "textlstm_test") -> str:
    """Create a randomly named database on `admin_url`'s server; return its URL."""
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database `url` names, closing its connections first."""
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


def analyze(url: str) -> None:
    """Refresh the planner's statistics, as autovacuum would some time after a bulk load: a
    freshly loaded table is planned as if it were empty (a benchmark would measure that)."""
    from sqlalchemy import create_engine

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


@contextmanager
def throwaway_database(
    admin_url: str, prefix: str = "textlstm_test", *, migrate: bool = True, keep: bool = False
) -> Iterator[str]:
    """A fresh database (migrated unless `migrate=False`), dropped at the end unless `keep`."""
    url = create_database(admin_url, prefix)
    try:
        if migrate:
            from textlstm.store.migrate import upgrade

            upgrade(url)
        yield url
    finally:
        if not keep:
            drop_database(admin_url, url)


def pg_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, or in Debian's versioned directory."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None
    )
    if found is None:
        raise RuntimeError(f"{name} not found: PostgreSQL server binaries are needed")
    return found


class OwnPostgres:
    """A private PostgreSQL cluster (trust auth, socket and data in a temporary directory).

    PostgreSQL refuses to run as root, so as root the server commands run as the `postgres`
    user, who owns the directory. `stop()` is a fast shutdown: open transactions are rolled back
    and connections dropped, as when the database server is restarted.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="textlstm-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            [*self._as, pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
             "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self._as, pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-l",
             str(self.dir / "server.log"), *args],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", opts, "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)
