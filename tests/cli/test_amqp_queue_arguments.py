"""A RabbitMQ deployment whose queues an older version declared (a quorum queue with
`x-queue-type` only, no delivery limit or dead-lettering) gets ONE line at start-up from every
command, naming the queue, the argument that differs and the migration (drain, delete:
docs/brokers.md), instead of PRECONDITION_FAILED in a traceback from inside Celery. The
worker declares the dead-letter queue itself; nothing else creates queues before checking.

One RabbitMQ node for the module (the test's own, on free loopback ports); real subprocesses
with a controlled environment, as tests/cli/test_amqp_errors.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cli_runs import ROOT, admin, amqp_env, run
from textlstm.errors import EX_CONFIG
from textlstm.testing.rabbitmq import OwnRabbitMQ, rabbitmq_available

QUEUE = "oldargs"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRabbitMQ]:
    """A node where the older version declared QUEUE's three priority queues."""
    if not rabbitmq_available():
        pytest.skip("RabbitMQ is not installed (rabbitmq-server, rabbitmqctl)")
    rabbit = OwnRabbitMQ(tmp_path_factory.mktemp("rabbitmq")).start()
    from kombu import Connection

    with Connection(rabbit.url, connect_timeout=5) as conn:
        for name in (f"{QUEUE}.high", QUEUE, f"{QUEUE}.bulk"):
            conn.channel().queue_declare(name, durable=True, auto_delete=False,
                                         arguments={"x-queue-type": "quorum"})  # fmt: skip
    yield rabbit
    rabbit.stop()


def env_of(node: OwnRabbitMQ, tmp_path: Path) -> dict[str, str]:
    return {**amqp_env(tmp_path, node.url), "TEXTLSTM_QUEUE": QUEUE}


def the_line(out: str) -> str:
    (line,) = [x for x in out.splitlines() if "exists with other arguments" in x]
    assert f"RabbitMQ queue '{QUEUE}.high'" in line, line  # the first one checked
    assert "inequivalent arg 'x-" in line and "rabbitmqctl delete_queue" in line, line
    assert "docs/brokers.md" in line, line
    return line


def test_status(node: OwnRabbitMQ, tmp_path: Path) -> None:
    code, out = admin(["status"], tmp_path, env_of(node, tmp_path))
    assert code == 2
    assert the_line(out).startswith("queues, workers: unavailable (")


def test_worker(node: OwnRabbitMQ, tmp_path: Path) -> None:
    code, out = admin(["worker", "-c", "1", "--device", "cpu"], tmp_path, env_of(node, tmp_path))
    assert code == 1
    assert out.strip().splitlines() == [the_line(out)]


def test_hand_started_celery_worker(node: OwnRabbitMQ, tmp_path: Path) -> None:
    env = {**env_of(node, tmp_path), "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool", "solo"]
    code, out = run(argv, tmp_path, env)
    assert code == EX_CONFIG
    assert the_line(out).startswith("textlstm worker: broker amqp://guest:***@")


def test_submit_and_dead_letters(node: OwnRabbitMQ, tmp_path: Path) -> None:
    env = env_of(node, tmp_path)
    del env["TEXTLSTM_DATABASE_URL"]  # no job row to write: the broker is the first stop
    (tmp_path / "in.csv").write_text("text\nhello\n")
    for args in (["submit", "in.csv", "--model", "topics"], ["dead-letters", "list"]):
        code, out = admin(args, tmp_path, env)
        assert code == 1, out
        assert out.strip().splitlines() == [the_line(out)]
    assert node.depth(QUEUE) == 0  # nothing was published
    assert "oldargs.dead-letters" not in node.queues()  # nor declared
