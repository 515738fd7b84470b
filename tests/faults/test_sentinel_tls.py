"""Redis Sentinel over TLS, with passwords, run the way a user runs it.

The test's own CA and server certificate (`textlstm.testing.tls`), and its own master, replica
and three Sentinels serving TLS only (plain TCP port 0; the replica and the Sentinels reach the
nodes over TLS) with a password on the Redis nodes and another on the Sentinels
(`textlstm.testing.sentinel.OwnSentinelSet`; never the machine's shared Redis). Everything is
configured through the three documented variables only (docs/brokers.md, "Redis Sentinel over
TLS"), given as JSON text to real processes: a `textlstm-admin worker`, `textlstm-admin submit`
and `textlstm-admin status`. Each job must end with exactly one row per item.

Then the master is SIGKILLed: the Sentinels promote the replica over TLS, the same worker
process follows it, and a job submitted after the failover finishes the same way. No password
is printed by any of them.

The database is the test's own on the PostgreSQL server, and no fixture here opens the
shared Redis (`e2e_settings`/`worker_env` would, to clean up their queue's keys).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, texts, wait_job
from tests.fixtures.workers import Fleet, host_env
from textlstm.settings import Settings
from textlstm.testing.sentinel import OwnSentinelSet
from textlstm.testing.tls import HAVE_OPENSSL, make_certs

pytestmark = pytest.mark.skipif(not HAVE_OPENSSL, reason="needs openssl for its certificates")

REDIS_PW = "Rd-Tls-S3cret-4b1"
SENTINEL_PW = "Sn-Tls-S3cret-8d2"
ADMIN = Path(sys.executable).with_name("textlstm-admin")
#: How a Redis node refuses a client that did not authenticate (redis-py's wording or Redis's).
NOT_AUTHENTICATED = r"(?i)already authenticated|authentication required|NOAUTH"


@pytest.fixture
def tls_set(tmp_path: Path) -> Iterator[OwnSentinelSet]:
    tls = make_certs(tmp_path / "certs")
    s = OwnSentinelSet(tmp_path / "sentinel", tls=tls, password=REDIS_PW,
                       sentinel_password=SENTINEL_PW)  # fmt: skip
    try:
        yield s.start()
    finally:
        s.close()


def user_env(tls_set: OwnSentinelSet, db_url: str, queue: str, tmp_path: Path) -> dict[str, str]:
    """The environment a deployment gives every process: the documented variables, as text."""
    settings = Settings(
        database_url=db_url,
        broker_url=tls_set.url,
        broker_transport_options=tls_set.transport_options,
        queue=queue,
        _env_file=None,  # type: ignore[call-arg]
    )
    env = host_env(settings, tmp_path / "worker-cache")
    env.update(
        TEXTLSTM_BROKER_TRANSPORT_OPTIONS=json.dumps(tls_set.transport_options),
        TEXTLSTM_BROKER_USE_SSL=json.dumps(tls_set.use_ssl),
        TEXTLSTM_WORKER_DB_RETRY_INITIAL_S="0.2",
        TEXTLSTM_WORKER_DB_RETRY_MAX_S="1",
        MKL_NUM_THREADS="1",
    )
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The Settings a process started with `env` reads (the JSON parsed as it parses it)."""
    return Settings(
        database_url=env["TEXTLSTM_DATABASE_URL"],
        broker_url=env["TEXTLSTM_BROKER_URL"],
        broker_transport_options=env["TEXTLSTM_BROKER_TRANSPORT_OPTIONS"],
        broker_use_ssl=env["TEXTLSTM_BROKER_USE_SSL"],
        queue=env["TEXTLSTM_QUEUE"],
        _env_file=None,  # type: ignore[call-arg]
    )


def admin(
    args: list[str], cwd: Path, env: dict[str, str], *, code: int = 0, timeout: float = 120
) -> str:
    """`textlstm-admin ARGS` as a user runs it; its output, which must hold no secret and no
    traceback, and its exit status `code`."""
    argv = (
        [str(ADMIN)]
        if ADMIN.exists()
        else [sys.executable, "-c", "from textlstm.cli import cli; cli()"]
    )
    proc = subprocess.run([*argv, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert REDIS_PW not in out and SENTINEL_PW not in out and "Traceback" not in out, out
    assert proc.returncode == code, out
    return out


def submit_file(n: int, seed: int, cwd: Path, env: dict[str, str]) -> uuid.UUID:
    """`textlstm-admin submit FILE --model topics`: the job id it prints."""
    data = cwd / f"in-{seed}.csv"
    data.write_text("text\n" + "".join(f'"{t}"\n' for t in texts(n, seed=seed)))
    out = admin(["submit", str(data), "--model", "topics"], cwd, env)
    return uuid.UUID(out.split("as job ")[-1].split()[0])


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_worker_submit_and_status_over_tls_sentinels_and_a_failover(
    tls_set: OwnSentinelSet,
    topics: dict,
    db_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    queue = f"textlstm-tls-{uuid.uuid4().hex[:12]}"
    env = user_env(tls_set, db_url, queue, tmp_path)
    settings = settings_of(env)
    # Nothing is reachable in plain text: every listener is TLS (and the nodes want a password).
    assert all("port 0\n" in s.conf.read_text() for s in tls_set.sentinels)
    for node in (tls_set.master, tls_set.replica):
        argv = node.argv()
        assert argv[argv.index("--port") + 1] == "0" and "--tls-port" in argv

    fleet = Fleet(env, tmp_path)
    try:
        worker = fleet.start("--batch-max-items", "16", "--name", "tls")
        first = submit_file(40, 310, tmp_path, env)
        wait_job(settings, first, timeout=120)
        assert_exactly_once(session_factory, {first: 40})

        out = admin(["status", "--json"], tmp_path, env)
        st = json.loads(out)
        assert not st["errors"], st["errors"]
        assert queue in st["queues"] and st["unacked"] == 0
        assert [w["node"].startswith("tls") for w in st["workers"]] == [True], st["workers"]

        # Failover over TLS: the master's host is lost, and the first Sentinel with it (the
        # one whose URL carries the master's password; kombu's reconnection moves on to the
        # next URLs). The other two Sentinels promote the replica, and the same worker
        # process, a new `submit` and `status` reach it through them.
        old = tls_set.master.port
        tls_set.master.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        tls_set.master.proc.wait(10)  # type: ignore[union-attr]
        tls_set.sentinels[0].kill()
        tls_set.wait_failover(old, timeout=60)
        promoted = tls_set.node_at(tls_set.master_port() or 0)
        assert promoted is tls_set.replica
        # Its supervisor brings the old master back as the new one's replica, so that the
        # producers' WAIT for one replica (the sentinel:// default) can be met again.
        tls_set.master.extra_args = (*tls_set.master.extra_args, "--replicaof", "127.0.0.1",
                                     str(promoted.port))  # fmt: skip
        tls_set.master.start()
        tls_set.wait(lambda: tls_set._replica_synced(promoted), 60, "the old master in sync")

        second = submit_file(40, 311, tmp_path, env)
        wait_job(settings, second, timeout=120)
        assert_exactly_once(session_factory, {first: 40, second: 40})
        assert worker.alive(), worker.log()[-3000:]
        assert "exited with" not in worker.log()
        # Every URL it reconnected through carried the master's password (the settings copy
        # the first URL's onto the others): no attempt reached the master unauthenticated.
        assert not re.search(NOT_AUTHENTICATED, worker.log()), worker.log()[-3000:]

        st = json.loads(admin(["status", "--json"], tmp_path, env))
        assert not st["errors"] and len(st["workers"]) == 1, (st["errors"], st["workers"])
        log = fleet.logs()
        assert REDIS_PW not in log and SENTINEL_PW not in log
    finally:
        fleet.close()


def test_certificates_are_verified_and_a_tls_mistake_is_one_line(
    tls_set: OwnSentinelSet, tmp_path: Path
) -> None:
    """A CA that did not sign the server's certificate, for the master (TEXTLSTM_BROKER_USE_SSL)
    or for the Sentinels (`sentinel_kwargs`), and plain TCP to a TLS-only Sentinel: `submit`
    refuses at once, one line naming the broker, no traceback, no password."""
    foreign = str(make_certs(tmp_path / "other-ca")["ca"])
    base = {k: v for k, v in user_env(tls_set, "sqlite://", "q", tmp_path).items()
            if k != "TEXTLSTM_DATABASE_URL"}  # fmt: skip
    options = tls_set.transport_options
    sentinel_kwargs = options["sentinel_kwargs"]
    plain = {k: v for k, v in sentinel_kwargs.items() if not k.startswith("ssl")}
    cases = {
        "master": {"TEXTLSTM_BROKER_USE_SSL": json.dumps({"ssl_ca_certs": foreign})},
        "sentinels": {
            "TEXTLSTM_BROKER_TRANSPORT_OPTIONS": json.dumps(
                {**options, "sentinel_kwargs": {**sentinel_kwargs, "ssl_ca_certs": foreign}}
            )
        },
        "no tls to the sentinels": {
            "TEXTLSTM_BROKER_TRANSPORT_OPTIONS": json.dumps({**options, "sentinel_kwargs": plain})
        },
    }
    (tmp_path / "in.csv").write_text("text\nhello\n")
    for case, change in cases.items():
        out = admin(["submit", "in.csv", "--model", "topics"], tmp_path, {**base, **change},
                    code=1)  # fmt: skip
        lines = out.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (case, out)
        assert "sentinel://:***@127.0.0.1:" in lines[0], (case, out)
        if case != "no tls to the sentinels":
            assert "certificate verify failed" in lines[0], (case, out)
        if case != "master":  # the Sentinels' errors point at where their TLS is set
            assert 'sentinel_kwargs {"ssl": true, "ssl_ca_certs"' in lines[0], (case, out)


def test_a_reconnection_through_another_sentinels_url_authenticates(
    tls_set: OwnSentinelSet, tmp_path: Path
) -> None:
    """kombu, moving to the next URL of the list after a lost connection, reads the master's
    password from that URL. As given (first URL only) the other URLs reach the TLS master
    unauthenticated; as the settings read it, every URL carries it."""
    from kombu import Connection
    from kombu.exceptions import OperationalError
    from redis.exceptions import AuthenticationError

    from textlstm.broker_options import ssl_context_options

    settings = settings_of(user_env(tls_set, "sqlite://", "q", tmp_path))
    assert tls_set.url.count(REDIS_PW) == 1 and settings.broker_url.count(REDIS_PW) == 3

    def through_second_url(url: str) -> None:
        conn = Connection(url, transport_options=settings.broker_transport_options,
                          ssl=ssl_context_options(settings.broker_use_ssl))  # fmt: skip
        try:
            conn.switch(conn.alt[1])
            conn.connect()  # one try, then the next URL (the third), as a reconnection does
        finally:
            conn.release()

    # redis-py's AuthenticationError ("HELLO must be called with the client already
    # authenticated…"), or kombu's wrapping of it.
    with pytest.raises((OperationalError, AuthenticationError), match=NOT_AUTHENTICATED):
        through_second_url(tls_set.url)
    through_second_url(settings.broker_url)
