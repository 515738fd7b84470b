"""A private RabbitMQ node on free loopback ports in a directory of its own (the AMQP end-to-end
and fault tests; never the machine's shared RabbitMQ on 5672, which is neither stopped nor
restarted nor configured by anything here).

The node is RabbitMQ's own start script run directly (`/usr/lib/rabbitmq/bin/rabbitmq-server`;
the `/usr/sbin` wrapper would switch to the `rabbitmq` user and its shared home), with:

- a unique node name (`textlstm-test-<random>@localhost`) and free AMQP and distribution ports;
- its database, logs, config and Erlang cookie in `workdir` (`HOME` is `workdir`, so a fresh
  `.erlang.cookie` is made there and `rabbitmqctl` run through `ctl` uses the same one);
- no plugin at all (an empty `enabled_plugins`): no management listener on 15672; or, with
  `management=True`, the management plugin alone, listening on a free loopback port
  (`management_url`), its statistics refreshed every 500 ms instead of 5 s so a test sees a
  change at once.

`start` returns once an AMQP handshake succeeds (kombu's `ensure_connection`), `stop` asks
the node to stop and kills its process group if it does not. The default user is `guest`, allowed
over loopback (it is, by RabbitMQ's default, only over loopback).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from textlstm.testing.ports import free_port

#: Where the Debian/Ubuntu package keeps the real scripts.
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def rabbitmq_script(name: str) -> str:
    """The path of a RabbitMQ script (`rabbitmq-server`, `rabbitmqctl`); RuntimeError when
    RabbitMQ is not installed."""
    candidate = RABBITMQ_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(f"no {name}: install the rabbitmq-server package")


def rabbitmq_available() -> bool:
    try:
        rabbitmq_script("rabbitmq-server")
        rabbitmq_script("rabbitmqctl")
    except RuntimeError:
        return False
    return True


class OwnRabbitMQ:
    """A private RabbitMQ node. `url` is what workers and producers are given."""

    def __init__(self, workdir: Path, *, management: bool = False) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.nodename = f"textlstm-test-{secrets.token_hex(4)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        while self.dist_port == self.port:
            self.dist_port = free_port()
        self.management_port: int | None = None
        conf = "loopback_users.guest = true\nlog.console = false\nlog.file.level = info\n"
        plugins = "[]"
        if management:
            self.management_port = free_port()
            while self.management_port in (self.port, self.dist_port):
                self.management_port = free_port()
            plugins = "[rabbitmq_management]"
            conf += (
                f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {self.management_port}\n"
                "collect_statistics_interval = 500\n"
            )
        (self.dir / "enabled_plugins").write_text(f"{plugins}.\n")
        (self.dir / "rabbitmq.conf").write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def management_url(self) -> str:
        """The management HTTP API (`TEXTLSTM_RABBITMQ_MANAGEMENT_URL`), guest over loopback."""
        if self.management_port is None:
            raise RuntimeError("this node was started without management=True")
        return f"http://guest:guest@127.0.0.1:{self.management_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update(
            HOME=str(self.dir),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.dir / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(self.dir / "rabbitmq-env.conf"),
        )
        return env

    def start(self, timeout: float = 90.0) -> OwnRabbitMQ:
        """Start the node (again, after `stop`/`kill`: same name, ports and data) and wait for
        an AMQP handshake; `start_seconds` is how long that took."""
        t0 = time.monotonic()
        log = (self.dir / "server.out").open("ab")
        self.proc = subprocess.Popen(
            [rabbitmq_script("rabbitmq-server")],
            env=self.env(),
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rabbitmq-server exited with {self.proc.returncode} before accepting "
                    f"connections; see {self.dir / 'server.out'} and {self.dir / 'log'}"
                )
            if self.handshake(timeout=2.0):
                break
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"RabbitMQ node {self.nodename} not up after {timeout:g}s")
            time.sleep(0.25)
        self.start_seconds = time.monotonic() - t0
        return self

    def handshake(self, timeout: float = 2.0) -> bool:
        """True when an AMQP connection opens (TCP connect and the protocol handshake)."""
        from kombu import Connection

        conn = Connection(self.url, connect_timeout=timeout)
        try:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            return True
        except Exception:
            return False
        finally:
            conn.release()

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """`rabbitmqctl -n NODE args…` on this node; its stdout (CalledProcessError on failure)."""
        out = subprocess.run(
            [rabbitmq_script("rabbitmqctl"), "-n", self.nodename, *args],
            env=self.env(),
            cwd=self.dir,
            capture_output=True,
            timeout=timeout,
            check=True,
        )
        return out.stdout.decode(errors="replace")

    def queues(self) -> dict[str, dict[str, str]]:
        """Every queue of the default vhost: name -> {type, messages, durable}."""
        text = self.ctl(
            "list_queues", "name", "type", "messages", "durable", "--quiet", "--no-table-headers"
        )
        out: dict[str, dict[str, str]] = {}
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                out[parts[0]] = {"type": parts[1], "messages": parts[2], "durable": parts[3]}
        return out

    def rows(self, *what: str) -> list[list[str]]:
        """`rabbitmqctl list_<what[0]> <what[1:]…>` as rows of tab-separated fields."""
        text = self.ctl(f"list_{what[0]}", *what[1:], "--quiet", "--no-table-headers")
        return [line.split("\t") for line in text.splitlines() if line.strip()]

    def depth(self, queue: str) -> int:
        """Messages ready in `queue` now (a passive `queue.declare`'s `message_count`, exact,
        where `list_queues` shows statistics up to seconds old)."""
        from kombu import Connection

        with Connection(self.url, connect_timeout=5) as conn:
            ok = conn.default_channel.queue_declare(queue=queue, passive=True)
            return int(ok.message_count)

    def stop(self, timeout: float = 60.0) -> None:
        """A clean stop (`rabbitmqctl stop`), then the process group killed if still there."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.ctl("stop", timeout=timeout)
        except (subprocess.SubprocessError, OSError):
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the node's whole process group (beam, its port programs)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> OwnRabbitMQ:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
