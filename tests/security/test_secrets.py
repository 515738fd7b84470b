"""Issue 6 item 4: secrets and access.

- Redis with `requirepass`, and with an ACL user (default user off), works end to end with
  `redis://:pw@…` / `redis://user:pw@…`; `rediss://` TLS (a throwaway CA and server certificate
  made with openssl, verified with `ssl_cert_reqs=required`) likewise. A wrong password or a
  certificate from another CA is one clear error with the password masked.
- Database and broker passwords never appear in worker logs, CLI output or exceptions, even
  while the database is unreachable.
- A worker whose final Celery configuration accepts pickle refuses to start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, submit, texts, wait_job
from tests.fixtures.workers import Fleet
from textlstm.errors import BrokerError
from textlstm.settings import Settings, get_settings
from textlstm.testing.redis_server import OwnRedis
from textlstm.testing.tls import HAVE_OPENSSL, make_certs

PG = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
DB_SECRET = "Db-S3cret-7f1e"
REDIS_SECRET = "Rd-S3cret-9a2c"


def run_job_through(
    redis: OwnRedis,
    settings: Settings,
    worker_env: dict[str, str],
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> str:
    """One job, producer to SQL, through `redis`; returns the worker's log."""
    settings = settings.model_copy(update={"broker_url": redis.url})
    fleet = Fleet({**worker_env, "TEXTLSTM_BROKER_URL": redis.url}, tmp_path)
    try:
        w = fleet.start()
        job = submit(settings, texts(30, seed=160), per_message=4)
        wait_job(settings, job, timeout=90)
        assert_exactly_once(session_factory, {job: 30})
        return w.log()
    finally:
        fleet.close()


@PG
@pytest.mark.parametrize("auth", ["requirepass", "acl"])
def test_redis_password_and_acl_user_end_to_end(
    auth: str,
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    if auth == "acl":
        redis = OwnRedis(tmp_path / "r", acl_user=("textlstm", REDIS_SECRET))
    else:
        redis = OwnRedis(tmp_path / "r", password=REDIS_SECRET)
    redis.start()
    try:
        log = run_job_through(redis, e2e_settings, worker_env, tmp_path, session_factory)
        assert REDIS_SECRET not in log
        wrong = e2e_settings.model_copy(update={"broker_url": redis.url.replace("S3cret", "x")})
        with pytest.raises(BrokerError) as exc:
            submit(wrong, ["a"])
        assert REDIS_SECRET not in str(exc.value) and "Rd-x-9a2c" not in str(exc.value)
        assert "***" in str(exc.value)
    finally:
        redis.kill()


@PG
@pytest.mark.skipif(not HAVE_OPENSSL, reason="needs openssl")
def test_rediss_tls_end_to_end_and_a_foreign_certificate_is_refused(
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    tls = make_certs(tmp_path / "certs")
    redis = OwnRedis(tmp_path / "r", tls=tls, password=REDIS_SECRET).start()
    try:
        assert redis.url.startswith("rediss://")
        log = run_job_through(redis, e2e_settings, worker_env, tmp_path, session_factory)
        assert REDIS_SECRET not in log
        other = make_certs(tmp_path / "other-ca")["ca"]
        foreign = redis.url.replace(str(tls["ca"]), str(other))
        # In a fresh process: kombu's global connection pools are keyed without the ssl_*
        # options, so in this process the connection verified above would simply be reused.
        code = (
            "import sys; from textlstm.client import Client; from textlstm.settings import "
            "Settings; Client(Settings(broker_url=sys.argv[1], _env_file=None))"
            ".submit(['a'], model='topics', record_job=False)"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code, foreign], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode != 0
        assert "BrokerError" in proc.stderr and "certificate verify failed" in proc.stderr
        assert REDIS_SECRET not in proc.stderr + proc.stdout
    finally:
        redis.kill()


@PG
def test_database_password_never_in_logs_cli_output_or_exceptions(
    topics: dict,
    e2e_settings: Settings,
    worker_env: dict[str, str],
    own_redis: OwnRedis,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    session_factory: sessionmaker[Session],
) -> None:
    from textlstm.client import Client
    from textlstm.testing.proxy import TcpProxy

    url = make_url(db_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    # Trust authentication ignores the password, so the secret rides along on a working URL.
    secret_url = url.set(
        host="127.0.0.1", port=proxy.port, username="postgres", password=DB_SECRET
    ).render_as_string(hide_password=False)
    dead_url = make_url(secret_url).set(port=1).render_as_string(hide_password=False)
    env = {
        **worker_env,
        "TEXTLSTM_BROKER_URL": own_redis.url,
        "TEXTLSTM_DATABASE_URL": secret_url,
    }
    fleet = Fleet(env, tmp_path)
    settings = e2e_settings.model_copy(update={"broker_url": own_redis.url})
    try:
        w = fleet.start("--warmup", "topics")
        proxy.pause()  # the database goes away: retries are logged with their reasons
        job = submit(settings, texts(20, seed=161), per_message=5)
        w.wait_for(lambda log: "failed (attempt 3)" in log, 60, "retries while it is down")
        proxy.resume()
        wait_job(settings, job, timeout=90)
        assert DB_SECRET not in w.log()

        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("TEXTLSTM_BROKER_URL", own_redis.url)
        runner = CliRunner()
        for db in (dead_url, secret_url):
            monkeypatch.setenv("TEXTLSTM_DATABASE_URL", db)
            get_settings.cache_clear()
            for argv in (
                ["jobs", "list"],
                ["jobs", "show", str(job)],
                ["jobs", "show", str(uuid.uuid4())],
                ["jobs", "reap", "--older-than", "0s"],
                ["results", str(job)],
                ["db", "current"],
                ["status"],
                ["models", "list"],
            ):
                out = runner.invoke(cli_group(), argv)
                assert DB_SECRET not in out.output, (argv, out.output)
                if out.exception is not None and not isinstance(out.exception, SystemExit):
                    assert DB_SECRET not in repr(out.exception), argv
            with pytest.raises(Exception) as exc:  # noqa: B017 - any error, checked below
                Client(Settings(database_url=dead_url, _env_file=None)).status(job)  # type: ignore[call-arg]
            assert DB_SECRET not in str(exc.value) and DB_SECRET not in repr(exc.value)
        assert DB_SECRET not in repr(Settings(database_url=secret_url, _env_file=None))  # type: ignore[call-arg]
    finally:
        get_settings.cache_clear()
        fleet.close()
        proxy.close()


def cli_group():  # type: ignore[no-untyped-def]
    from textlstm.cli import cli

    return cli


@PG
def test_worker_refuses_to_start_when_the_broker_accepts_pickle(
    worker_env: dict[str, str], own_redis: OwnRedis, queue_name: str
) -> None:
    from celery import Celery

    from worker.app import celery_config
    from worker.guards import unsafe_content

    app = Celery("check", set_as_current=False)
    app.conf.update(celery_config(Settings(_env_file=None)))  # type: ignore[call-arg]
    assert unsafe_content(app.conf) == []
    code = (
        "import sys; from worker.app import app; "
        "app.conf.accept_content = ['json', 'pickle']; "
        "app.worker_main(['worker', '--pool', 'solo', '-Q', sys.argv[1], '--without-gossip', "
        "'--without-mingle', '--without-heartbeat'])"
    )
    # Celery's own check only covers root (and exits 0); C_FORCE_ROOT skips it, as a non-root
    # deployment would, so our guard is what stops the worker.
    env = {**worker_env, "TEXTLSTM_BROKER_URL": own_redis.url, "C_FORCE_ROOT": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, queue_name],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == os.EX_CONFIG, out[-2000:]  # final: the supervisor won't restart
    assert "refusing to start: the broker's accept_content allows pickle" in out
    assert "Traceback" not in out
    assert " ready." not in out
