"""Services a fault test owns: a redis-server on a free port in a temporary directory (with
append-only persistence, a password, ACL users or TLS as asked), which the test may stop and
restart, and the end-of-test check every fault test shares.

A PostgreSQL cluster of its own too (`OwnPostgres`: initdb in a temporary directory, its own
port), which a test stops and starts again. The machine's shared Redis and PostgreSQL are never
stopped; a network cut to the shared server is a TCP proxy (tests/e2e/proxy.py).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
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
            [*self._as, _pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
             "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self._as, _pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-l",
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


class OwnRedis:
    """A private redis-server. `url` is what workers and producers are given."""

    def __init__(
        self,
        workdir: Path,
        *,
        appendonly: bool = True,
        password: str | None = None,
        acl_user: tuple[str, str] | None = None,
        tls: dict[str, Path] | None = None,
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.password = password
        self.acl_user = acl_user
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.acl_user:
            auth = f"{self.acl_user[0]}:{self.acl_user[1]}@"
        elif self.password:
            auth = f":{self.password}@"
        query = ""
        if self.tls:
            query = f"?ssl_cert_reqs=required&ssl_ca_certs={self.tls['ca']}"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0{query}"

    def argv(self) -> list[str]:
        argv = ["redis-server", "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        argv += ["--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always"]
        if self.password:
            argv += ["--requirepass", self.password]
        if self.acl_user:
            user, pw = self.acl_user
            # The default user is switched off: only this named user may connect.
            acl = self.dir / "users.acl"
            acl.write_text(f"user default off\nuser {user} on >{pw} ~* &* +@all\n")
            argv += ["--aclfile", str(acl)]
        if self.tls:
            argv += ["--port", "0", "--tls-port", str(self.port)]
            argv += ["--tls-cert-file", str(self.tls["cert"]), "--tls-key-file"]
            argv += [str(self.tls["key"]), "--tls-ca-cert-file", str(self.tls["ca"])]
            argv += ["--tls-auth-clients", "no"]
        else:
            argv += ["--port", str(self.port)]
        return argv

    def start(self) -> OwnRedis:
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 15
        while True:
            try:
                c = self.client()
                c.ping()
                c.close()
                return self
            except (redis.ConnectionError, redis.AuthenticationError, OSError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError((self.dir / "redis.log").read_text()[-2000:]) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Redis fsyncs its append-only file and exits (as a managed restart would)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    def kill(self) -> None:
        """SIGKILL: no shutdown save (with appendfsync always the AOF already has every write)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)

    def client(self) -> Any:
        return redis.Redis.from_url(self.url, socket_timeout=5)


def assert_exactly_once(
    session_factory: sessionmaker[Session], jobs: dict[uuid.UUID, int], *, ok: bool = True
) -> None:
    """The check every fault test ends with: every submitted item has exactly one row (no
    index missing, none twice: the primary key forbids twice, the count proves none lost),
    the job's counters equal what its rows say, and no job is left queued or running."""
    from textlstm.store.models import Job, Prediction

    with session_factory() as s:
        for job_id, n in jobs.items():
            indexes = list(
                s.scalars(
                    select(Prediction.item_index)
                    .where(Prediction.job_id == job_id)
                    .order_by(Prediction.item_index)
                )
            )
            assert indexes == list(range(n)), f"job {job_id}: {len(indexes)} rows for {n} items"
            job = s.get(Job, job_id)
            assert job is not None
            by_status = dict(
                s.execute(
                    select(Prediction.status, func.count())
                    .where(Prediction.job_id == job_id)
                    .group_by(Prediction.status)
                ).all()
            )
            assert job.ok_count == by_status.get("ok", 0)
            assert job.error_count == n - job.ok_count and job.expected_count == n
            if ok:
                assert (job.status, job.ok_count) == ("done", n), job.status
        stuck = s.scalar(
            select(func.count()).where(Job.id.in_(jobs), Job.status.in_(("queued", "running")))
        )
        assert stuck == 0


def assert_queue_drained(client: Any, queues: list[str], timeout: float = 20.0) -> None:
    """Nothing waiting and nothing delivered-but-unacked on the test's own Redis."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(client.llen(q) for q in queues) and client.hlen("unacked") == 0:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"left in Redis: {[client.llen(q) for q in queues]} queued, "
        f"{client.hlen('unacked')} unacked"
    )
