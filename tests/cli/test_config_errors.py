"""Settings and URL mistakes end as one line per problem, naming the TEXTLSTM_ variable: no
traceback, a non-zero exit, and never a password, through every entry point (the admin CLI, the
worker supervisor and a hand-started Celery worker, the plain `alembic` command, the client).

Real subprocesses with a controlled environment (no TEXTLSTM_* variable of the test run leaks
in) and a fresh working directory (no stray `.env`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from textlstm.errors import EX_CONFIG, ConfigError, SettingsError, TextlstmError
from textlstm.settings import Settings, get_settings
from textlstm.urlcheck import _installed

PW = "pa55-Secret-9"  # must never be printed
ROOT = Path(__file__).resolve().parents[2]
ADMIN = Path(sys.executable).with_name("textlstm-admin")


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTLSTM_")}
    # Nothing reachable: a check that let a mistake through would fail fast, not hang.
    env["TEXTLSTM_BROKER_URL"] = "redis://127.0.0.1:1/0"
    env["TEXTLSTM_DATABASE_URL"] = "sqlite:///./never.db"
    env.update({f"TEXTLSTM_{k}": v for k, v in overrides.items()})
    return env


def admin(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    argv = (
        [str(ADMIN)]
        if ADMIN.exists()
        else [sys.executable, "-c", "from textlstm.cli import cli; cli()"]
    )
    return subprocess.run(
        [*argv, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_each(
    proc: subprocess.CompletedProcess[str], *expected: str, code: int | None = None
) -> list[str]:
    """Exit non-zero; stderr is exactly one line per expected fragment, in order; no
    traceback and no password anywhere."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    if code is not None:
        assert proc.returncode == code, out
    assert "Traceback" not in out and PW not in out, out
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(expected), out
    for line, fragment in zip(lines, expected, strict=True):
        assert fragment in line, (fragment, out)
        assert "TEXTLSTM_" in line, line
    return lines


CASES = [
    # database URL: unparsable, unsupported, driver, port
    ({"DATABASE_URL": "notaurl"}, "TEXTLSTM_DATABASE_URL: not a database URL (use sqlite:///"),
    ({"DATABASE_URL": f"app:{PW}@db/tl"}, "TEXTLSTM_DATABASE_URL: not a database URL"),
    ({"DATABASE_URL": ""}, "TEXTLSTM_DATABASE_URL: is empty"),
    (
        {"DATABASE_URL": f"mysql://app:{PW}@db/tl"},
        "TEXTLSTM_DATABASE_URL: unsupported database 'mysql' (use sqlite:///path or "
        "postgresql+psycopg://",
    ),
    ({"DATABASE_URL": f"oracle://app:{PW}@db/tl"}, "unsupported database 'oracle'"),
    ({"DATABASE_URL": f"postgresql+pg8000://app:{PW}@db/tl"}, "driver 'pg8000' "),
    ({"DATABASE_URL": f"postgresql+asyncpg://app:{PW}@db/tl"}, "driver 'asyncpg' "),
    ({"DATABASE_URL": "sqlite+aiosqlite:///x.db"}, "driver 'aiosqlite' "),
    ({"DATABASE_URL": f"postgresql+psycopg://app:{PW}@db:notaport/tl"}, "not a database URL"),
    ({"DATABASE_URL": f"postgresql://app:{PW}@db:99999/tl"}, "port 99999 is out of range"),
    # broker URL
    ({"BROKER_URL": f"kafka://app:{PW}@k:9092"}, "TEXTLSTM_BROKER_URL: unsupported broker 'kafka'"),
    ({"BROKER_URL": f"http://app:{PW}@h/"}, "unsupported broker 'http'"),
    ({"BROKER_URL": f"{PW}@cache:6379"}, "TEXTLSTM_BROKER_URL: not a broker URL"),
    ({"BROKER_URL": f"redis://:{PW}@cache:port/0"}, "TEXTLSTM_BROKER_URL: bad host or port"),
    ({"BROKER_URL": f"rediss://:{PW}@cache:6380/zero"}, "Redis database (after host:port/) must"),
    # unencoded / and # in a password: the rest of it lands in the path or fragment
    ({"BROKER_URL": f"redis://:ab/{PW}@cache:6379/0"}, "(a password holding / # ? @ or :"),
    ({"BROKER_URL": f"redis://cache:6379/{PW}@x"}, "must be a number (a password holding"),
    ({"BROKER_URL": f"redis://:ab#{PW}@cache:6379/0"}, "TEXTLSTM_BROKER_URL: bad host or port"),
    ({"DATABASE_URL": f"postgresql://u:ab#{PW}@db:99999/tl"}, "TEXTLSTM_DATABASE_URL: "),
    ({"BROKER_URL": "   "}, "TEXTLSTM_BROKER_URL: is empty"),
    # numbers: not a number, out of range
    ({"QUEUE_MAX_PENDING": "abc"}, "TEXTLSTM_QUEUE_MAX_PENDING: must be a whole number, got 'abc'"),
    ({"MAX_TEXT_CHARS": "1.5"}, "TEXTLSTM_MAX_TEXT_CHARS: must be a whole number"),
    ({"QUEUE_FULL_TIMEOUT_S": "soon"}, "TEXTLSTM_QUEUE_FULL_TIMEOUT_S: must be a number"),
    ({"METRICS_PORT": "70000"}, "TEXTLSTM_METRICS_PORT: must be at most 65535, got '70000'"),
    ({"WORKER_BATCH_MAX_ITEMS": "0"}, "TEXTLSTM_WORKER_BATCH_MAX_ITEMS: must be at least 1"),
    ({"WORKER_RESTORE_INTERVAL_S": "0"}, "TEXTLSTM_WORKER_RESTORE_INTERVAL_S: must be more than"),
    ({"MAX_JOB_ITEMS": "2147483648"}, "TEXTLSTM_MAX_JOB_ITEMS: must be at most 2147483647"),
    ({"WORKER_GC_THRESHOLD": "1e12"}, "TEXTLSTM_WORKER_GC_THRESHOLD: must be a whole number"),
    ({"WORKER_GC_THRESHOLD": "9" * 12}, "TEXTLSTM_WORKER_GC_THRESHOLD: must be at most 2147483647"),
    ({"SQLITE_BUSY_TIMEOUT_MS": "-1"}, "TEXTLSTM_SQLITE_BUSY_TIMEOUT_MS: must be at least 0"),
    # choices and patterns
    ({"QUEUE_FULL_POLICY": "drop"}, "TEXTLSTM_QUEUE_FULL_POLICY: must be 'refuse' or 'block'"),
    ({"WORKER_QUANTIZE": "int4"}, "TEXTLSTM_WORKER_QUANTIZE: must be 'none' or 'int8'"),
    ({"WORKER_NAME": "a/b"}, "TEXTLSTM_WORKER_NAME: must match"),
    ({"WORKER_DEVICE": "gpu"}, "TEXTLSTM_WORKER_DEVICE: must be auto, cpu, cuda or cuda:N"),
    ({"WORKER_GPUS": "0;1"}, "TEXTLSTM_WORKER_GPUS: must be GPU indices separated by commas"),
    ({"QUEUE": ""}, "TEXTLSTM_QUEUE: must not be empty"),
    ({"DEFAULT_MODEL": "news@"}, "TEXTLSTM_DEFAULT_MODEL: invalid model reference 'news@'"),
    ({"WORKER_WARMUP_MODEL": "a b"}, "TEXTLSTM_WORKER_WARMUP_MODEL: invalid model"),
]


@pytest.mark.parametrize(("overrides", "expected"), CASES, ids=lambda v: str(v)[:40])
def test_admin_command_prints_one_line(
    overrides: dict[str, str], expected: str, tmp_path: Path
) -> None:
    proc = admin(["jobs", "list"], tmp_path, clean_env(**overrides))
    assert_one_line_each(proc, expected, code=1)
    assert not (tmp_path / "never.db").exists()


def test_several_mistakes_one_line_each(tmp_path: Path) -> None:
    env = clean_env(
        DATABASE_URL=f"mysql://app:{PW}@db/tl", QUEUE_MAX_PENDING="-3", WORKER_QUANTIZE="fp8"
    )
    proc = admin(["status"], tmp_path, env)
    assert_one_line_each(
        proc,
        "TEXTLSTM_DATABASE_URL: unsupported database 'mysql'",
        "TEXTLSTM_QUEUE_MAX_PENDING: must be at least 0, got '-3'",
        "TEXTLSTM_WORKER_QUANTIZE: must be 'none' or 'int8', got 'fp8'",
    )


def test_dotenv_mistakes(tmp_path: Path) -> None:
    env = clean_env()
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"TEXTLSTM_BROKER_URL=kafka://u:{PW}@k\nTEXTLSTM_WORKER_THREADS=many\n")
    del env["TEXTLSTM_BROKER_URL"]  # from the file
    proc = admin(["jobs", "list"], tmp_path, env)
    assert_one_line_each(
        proc,
        "TEXTLSTM_BROKER_URL: unsupported broker 'kafka'",
        "TEXTLSTM_WORKER_THREADS: must be a whole number, got 'many'",
    )

    dotenv.write_bytes(b"TEXTLSTM_QUEUE=caf\xe9\n")  # Latin-1, not UTF-8
    proc = admin(["jobs", "list"], tmp_path, env)
    (line,) = assert_one_line_each(proc, "/.env: not utf-8 text")
    assert "byte 0xe9 at offset 18" in line

    dotenv.unlink()
    dotenv.mkdir()
    proc = admin(["jobs", "list"], tmp_path, env)
    assert_one_line_each(proc, "/.env: not a file")


def test_worker_supervisor_stops_at_once_with_one_line(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"mysql://app:{PW}@db/tl")
    started = time.monotonic()
    proc = admin(["worker", "--concurrency", "2", "--device", "cpu"], tmp_path, env, timeout=60)
    assert_one_line_each(proc, "TEXTLSTM_DATABASE_URL: unsupported database 'mysql'", code=1)
    assert time.monotonic() - started < 30  # no process started, none restarted

    env = clean_env(WORKER_PREFETCH="lots")
    proc = admin(["worker", "-c", "1"], tmp_path, env, timeout=60)
    assert_one_line_each(proc, "TEXTLSTM_WORKER_PREFETCH: must be a whole number", code=1)

    # An option that would reach the processes as a setting is checked here too.
    proc = admin(["worker", "-c", "1", "--warmup", "x@@y"], tmp_path, clean_env(), timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "Error: invalid model reference 'x@@y': expected name, name@VERSION or name@ALIAS"
    ]


def test_hand_started_celery_worker_exits_ex_config_with_one_line(tmp_path: Path) -> None:
    env = clean_env(BROKER_URL=f"redis://:{PW}@cache:port/0")
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "solo"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_each(proc, "error: TEXTLSTM_BROKER_URL: bad host or port", code=EX_CONFIG)


def test_supervisor_does_not_restart_a_process_with_bad_settings(tmp_path: Path) -> None:
    from worker.supervisor import supervise

    starts = tmp_path / "starts"
    bad = f"open({str(starts)!r}, 'a').write('x'); raise SystemExit({EX_CONFIG})"
    good = "import time; time.sleep(60)"  # stopped by the supervisor, not left running
    started = time.monotonic()
    code = supervise(
        [([sys.executable, "-c", good], {}), ([sys.executable, "-c", bad], {})],
    )
    assert code == EX_CONFIG
    assert starts.read_text() == "x"  # started once, never restarted
    assert time.monotonic() - started < 30


def test_plain_alembic_command(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"postgresql+pg8000://app:{PW}@db/tl")
    proc = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "current"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_each(proc, "error: TEXTLSTM_DATABASE_URL: driver 'pg8000' ")


def test_client_raises_a_typed_error_with_the_same_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from textlstm import client

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEXTLSTM_DATABASE_URL", f"mysql://app:{PW}@db/tl")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as caught:
            client.Client()
        with pytest.raises(ConfigError):
            client.submit(["a text"], model="m")
    finally:
        get_settings.cache_clear()
    exc = caught.value
    assert isinstance(exc, TextlstmError) and isinstance(exc, ValueError)
    assert str(exc).startswith("TEXTLSTM_DATABASE_URL: unsupported database 'mysql'")
    assert exc.problems == [str(exc)]
    # Nothing on the exception or its hidden context echoes the password (pydantic's own
    # report, kept as __context__, has hide_input_in_errors).
    assert exc.__suppress_context__
    for text in (str(exc), repr(exc), str(exc.__context__), repr(exc.__context__)):
        assert PW not in text


def test_explicit_settings_report_every_problem() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            broker_url=f"sqs://key:{PW}@",
            database_url=f"postgresql+psycopg2://u:{PW}@h/db",
            worker_idle_poll_ms=0,
        )
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "TEXTLSTM_DATABASE_URL",
        "TEXTLSTM_BROKER_URL",
        "TEXTLSTM_WORKER_IDLE_POLL_MS",
    ]
    assert "driver 'psycopg2'" in problems[0] and "psycopg 3" in problems[0]
    assert "unsupported broker 'sqs'" in problems[1]
    assert PW not in str(caught.value)


@pytest.mark.skipif(_installed("pg8000"), reason="pg8000 is installed here")
def test_a_missing_driver_is_named() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings(database_url=f"postgresql+pg8000://u:{PW}@h/db", _env_file=None)  # type: ignore[call-arg]
    assert str(caught.value) == (
        "TEXTLSTM_DATABASE_URL: driver 'pg8000' is not installed, and textlstm needs psycopg 3 "
        "anyway (use postgresql+psycopg://user:password@host:5432/db)"
    )
    assert PW not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:s3cret@cache:6379/15",
        "redis://cache",
        "rediss://:pw@cache:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem",
        "redis://a:6379/0;redis://b:6379/0",  # Celery's failover list
        "redis+socket:///run/redis.sock",
        "sentinel://s1:26379;sentinel://s2:26379",
        "amqp://guest:guest@rabbit:5672//",
        "pyamqp://guest@rabbit//",
        "amqps://rabbit:5671//",
        "memory://",
    ],
)
def test_brokers_that_work_today_are_accepted(url: str) -> None:
    # A Sentinel broker also needs its master's name (test_sentinel_settings.py).
    options = {"master_name": "m"} if url.startswith("sentinel") else {}
    s = Settings(broker_url=url, broker_transport_options=options, _env_file=None)  # type: ignore[call-arg]
    assert s.broker_url == url


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("sqlite:///./textlstm.db", None),
        ("sqlite:////var/lib/textlstm/t.db", None),
        ("sqlite://", None),
        ("sqlite+pysqlite:///t.db", None),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", None),
        ("postgresql+psycopg://db/tl?password=x&sslmode=require", None),
        ("postgresql://u:pw@h/db", "postgresql+psycopg://u:pw@h/db"),
        ("postgres://u:pw@h:5433/db", "postgresql+psycopg://u:pw@h:5433/db"),
    ],
)
def test_databases_that_work_are_accepted(url: str, stored: str | None) -> None:
    s = Settings(database_url=url, _env_file=None)  # type: ignore[call-arg]
    assert s.database_url == (stored or url)
