"""An amqp:// broker URL with a wrong vhost, a wrong password or an unreachable host is one line
at start-up, naming TEXTLSTM_BROKER_URL, from every command: `status`, `worker` (and a
hand-started Celery worker), `submit`, `jobs requeue`, `jobs reap` and the gateway's
`/healthz`; no traceback, no password, no minute of connection retries.

One RabbitMQ node for the module (the test's own, on free loopback ports; never the machine's
shared one): a wrong vhost and a wrong password need a node that answers; the unreachable URL
is a free port nothing listens on. Real subprocesses with a controlled environment.
"""

from __future__ import annotations

import datetime
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cli_runs import PW, ROOT, admin, amqp_env, run
from textlstm.errors import EX_CONFIG
from textlstm.testing.ports import free_port
from textlstm.testing.rabbitmq import OwnRabbitMQ, rabbitmq_available

#: case -> (the URL's problem, a fragment of the one line that must say it)
CASES = {
    "vhost": "has no virtual host 'no-such-vhost' that user 'guest' may use (NOT_ALLOWED)",
    "password": "refused the login of user 'guest' (ACCESS_REFUSED)",
    "unreachable": "(connection refused): check the host and port in TEXTLSTM_BROKER_URL",
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRabbitMQ]:
    if not rabbitmq_available():
        pytest.skip("RabbitMQ is not installed (rabbitmq-server, rabbitmqctl)")
    rabbit = OwnRabbitMQ(tmp_path_factory.mktemp("rabbitmq")).start()
    yield rabbit
    rabbit.stop()


def bad_url(node: OwnRabbitMQ, case: str) -> str:
    if case == "vhost":
        return f"amqp://guest:{PW}@127.0.0.1:{node.port}/no-such-vhost".replace(PW, "guest")
    if case == "password":
        return f"amqp://guest:{PW}@127.0.0.1:{node.port}//"
    return f"amqp://guest:{PW}@127.0.0.1:{free_port()}//"


def the_line(out: str, case: str) -> str:
    (line,) = [x for x in out.splitlines() if CASES[case] in x]
    assert "TEXTLSTM_BROKER_URL" in line, line
    return line


def stuck_job(env: dict[str, str], tmp_path: Path) -> uuid.UUID:
    """A job row with no prediction, submitted an hour ago (what `reap` looks for)."""
    assert admin(["db", "upgrade"], tmp_path, env)[0] == 0
    from textlstm.store.db import session_scope
    from textlstm.store.jobs import ensure_job

    job = uuid.uuid4()
    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    with session_scope(env["TEXTLSTM_DATABASE_URL"]) as session:
        ensure_job(session=session, job_id=job, model_ref="topics", expected=3, metadata=None,
                   submitted_at=an_hour_ago)  # fmt: skip
    return job


@pytest.mark.parametrize("case", sorted(CASES))
def test_status(node: OwnRabbitMQ, case: str, tmp_path: Path) -> None:
    code, out = admin(["status"], tmp_path, amqp_env(tmp_path, bad_url(node, case)))
    assert code == 2  # status reports every source; the broker's is one line
    assert the_line(out, case).startswith("queues, workers: unavailable (")


@pytest.mark.parametrize("case", sorted(CASES))
def test_worker(node: OwnRabbitMQ, case: str, tmp_path: Path) -> None:
    env = amqp_env(tmp_path, bad_url(node, case))
    code, out = admin(["worker", "-c", "1", "--device", "cpu"], tmp_path, env)
    assert code == 1
    assert out.strip().splitlines() == [the_line(out, case)]
    assert the_line(out, case).startswith("Error: broker amqp://guest:***@127.0.0.1:")


@pytest.mark.parametrize("case", sorted(CASES))
def test_hand_started_celery_worker_exits_ex_config(
    node: OwnRabbitMQ, case: str, tmp_path: Path
) -> None:
    env = {**amqp_env(tmp_path, bad_url(node, case)), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "solo"]
    code, out = run(argv, tmp_path, env)
    assert code == EX_CONFIG
    assert the_line(out, case).startswith("textlstm worker: broker amqp://guest:***@")


@pytest.mark.parametrize("case", sorted(CASES))
def test_submit(node: OwnRabbitMQ, case: str, tmp_path: Path) -> None:
    env = amqp_env(tmp_path, bad_url(node, case))
    del env["TEXTLSTM_DATABASE_URL"]  # no job row to write: the broker is the first stop
    (tmp_path / "in.csv").write_text("text\nhello\n")
    code, out = admin(["submit", "in.csv", "--model", "topics"], tmp_path, env)
    assert code == 1
    assert out.strip().splitlines() == [the_line(out, case)]
    assert the_line(out, case).startswith("Error: broker amqp://guest:***@")


@pytest.mark.parametrize("case", sorted(CASES))
def test_jobs_requeue_and_reap(node: OwnRabbitMQ, case: str, tmp_path: Path) -> None:
    env = amqp_env(tmp_path, bad_url(node, case))
    job = stuck_job(env, tmp_path)
    code, out = admin(["jobs", "requeue", str(job)], tmp_path, env)
    assert code == 1
    assert out.strip().splitlines() == [the_line(out, case)]
    assert the_line(out, case).startswith(f"Error: could not read the broker's copies of job {job}")
    code, out = admin(["jobs", "reap", "--requeue"], tmp_path, env)
    assert code == 1
    assert out.strip().splitlines() == [the_line(out, case)]
    assert the_line(out, case).startswith("Error: broker amqp://guest:***@")


@pytest.mark.parametrize("case", sorted(CASES))
def test_gateway_healthz(node: OwnRabbitMQ, case: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from textlstm.gateway.app import create_app
    from textlstm.settings import Settings

    env = amqp_env(tmp_path, bad_url(node, case))
    assert admin(["db", "upgrade"], tmp_path, env)[0] == 0
    settings = Settings(  # type: ignore[call-arg]
        broker_url=env["TEXTLSTM_BROKER_URL"],
        database_url=env["TEXTLSTM_DATABASE_URL"],
        _env_file=None,
    )
    with TestClient(create_app(settings)) as api:
        r = api.get("/healthz")
    assert r.status_code == 503 and PW not in r.text
    checks = r.json()["checks"]
    assert checks["database"] == {"ok": True}
    assert not checks["broker"]["ok"]
    assert the_line(checks["broker"]["reason"], case)


def test_a_good_url_passes(node: OwnRabbitMQ, tmp_path: Path) -> None:
    """The same commands on the node's right URL: no broker line (the probe is no false alarm)."""
    env = amqp_env(tmp_path, node.url)
    assert admin(["db", "upgrade"], tmp_path, env)[0] == 0
    code, out = admin(["status"], tmp_path, env)
    assert code == 0, out
    code, out = admin(["jobs", "reap"], tmp_path, env)
    assert (code, out.strip()) == (0, "no job without progress for 15m")
