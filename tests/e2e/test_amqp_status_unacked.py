"""`textlstm-admin status` on amqp:// with TEXTLSTM_RABBITMQ_MANAGEMENT_URL: the unacked count.

AMQP gives a client no count of the messages delivered and not yet acked, so `status` reads
it from the RabbitMQ management HTTP API when that setting names it. The test's own node runs
the management plugin (`OwnRabbitMQ(management=True)`; never the machine's shared RabbitMQ);
a consumer holds a known number of messages without acking them, and `status`, a real
`textlstm-admin` process, must show exactly that many, and the rest as waiting. A management
URL that does not answer, or refuses the password, is one line naming the setting (exit 2, as
for any source that did not answer), with no password in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.jobs import submit, texts
from textlstm.settings import Settings
from textlstm.testing.ports import free_port
from textlstm.testing.rabbitmq import OwnRabbitMQ, rabbitmq_available

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

ADMIN = Path(sys.executable).with_name("textlstm-admin")
MESSAGES = 10  # 30 items, 3 a message
HELD = 4


@pytest.fixture
def managed_rabbitmq(tmp_path: Path) -> Iterator[OwnRabbitMQ]:
    if not rabbitmq_available():
        pytest.skip("RabbitMQ is not installed (rabbitmq-server, rabbitmqctl)")
    node = OwnRabbitMQ(tmp_path / "rabbitmq", management=True).start()
    yield node
    node.stop()


def status(env: dict[str, str], cwd: Path) -> tuple[int, str]:
    argv = (
        [str(ADMIN)]
        if ADMIN.exists()
        else [sys.executable, "-c", "from textlstm.cli import cli; cli()"]
    )
    proc = subprocess.run([*argv, "status"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "guest:guest" not in out, out
    return proc.returncode, out


def test_status_shows_unacked_from_the_management_api(
    managed_rabbitmq: OwnRabbitMQ, db_url: str, tmp_path: Path
) -> None:
    from kombu import Connection

    node = managed_rabbitmq
    queue = f"textlstm-mgmt-{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=db_url, broker_url=node.url, queue=queue, _env_file=None)  # type: ignore[call-arg]
    submit(settings, texts(3 * MESSAGES, seed=41), per_message=3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTLSTM_")}
    env.update(
        TEXTLSTM_DATABASE_URL=db_url,
        TEXTLSTM_BROKER_URL=node.url,
        TEXTLSTM_QUEUE=queue,
        TEXTLSTM_RABBITMQ_MANAGEMENT_URL=node.management_url,
    )

    # A consumer that holds HELD messages and acks none: RabbitMQ counts them unacked.
    with Connection(node.url, connect_timeout=5) as conn:
        channel = conn.channel()
        held = [channel.basic_get(queue=queue, no_ack=False) for _ in range(HELD)]
        assert all(m is not None for m in held)
        want = (
            f"delivered, not yet acked: {HELD}  (RabbitMQ management API)",
            f"{queue}  {MESSAGES - HELD}",
        )
        deadline = time.monotonic() + 30  # the node's statistics refresh every 500 ms
        while True:
            code, out = status(env, tmp_path)
            lines = [" ".join(x.split()) for x in out.splitlines()]
            if code == 0 and want[0] in out and " ".join(want[1].split()) in lines:
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.5)
        assert "dead letters: 0" in out  # the dead-letter queue's, counted on AMQP too
        channel.close()  # the held messages go back to the queue

    # A management URL that does not answer, or refuses the login: one line naming it.
    for url, why in (
        (f"http://guest:guest@127.0.0.1:{free_port()}", "Connection refused"),
        (node.management_url.replace("guest:guest", "guest:wrong"), "401"),
    ):
        code, out = status({**env, "TEXTLSTM_RABBITMQ_MANAGEMENT_URL": url}, tmp_path)
        assert code == 2, out
        (line,) = [x for x in out.splitlines() if "TEXTLSTM_RABBITMQ_MANAGEMENT_URL" in x]
        assert line.startswith("delivered, not yet acked: unavailable (TEXTLSTM_RABBITMQ_"), line
        assert why in line and "wrong" not in out, out
        assert f"{queue}" in out  # the ready depths are still shown


def test_without_the_setting_status_says_how_to_get_unacked(
    managed_rabbitmq: OwnRabbitMQ, db_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTLSTM_")}
    env.update(TEXTLSTM_DATABASE_URL=db_url, TEXTLSTM_BROKER_URL=managed_rabbitmq.url)
    code, out = status(env, tmp_path)
    assert code == 0, out
    assert "acked: not counted on this broker (set TEXTLSTM_RABBITMQ_MANAGEMENT_URL)" in out
