"""A private Redis Sentinel deployment: one master, one replica and three Sentinels, each a
process of its own on a free loopback port in one directory (the Sentinel fault test and
`bench/sentinel_failover.py`; never the machine's shared Redis).

Failover is fast on purpose: a master is judged down after `down_after_ms` (default 2 s) by
a quorum of two Sentinels, and promoting the replica then takes a second or two, so a test sees
the whole failover in a few seconds. (1 s proved too short on a loaded two-core machine: a
freshly promoted master that missed its pings was failed over again.) Redis nodes keep no
file (`appendonly no`, no snapshot):
what survives the master's death is what reached the replica, which is what a Sentinel
deployment promises.

With `tls` (a CA, certificate and key, `textlstm.testing.tls.make_certs`) every process serves
TLS only (plain TCP port 0): the nodes replicate over TLS (`tls-replication yes`) and the
Sentinels both serve TLS and reach the nodes and each other over it. With `password` the
nodes require it (`requirepass`, and `masterauth` so either may be the replica after a
failover) and the Sentinels are told it (`sentinel auth-pass`); with `sentinel_password` the
Sentinels require one of their own. `url`, `transport_options` and `use_ssl` are then exactly
what a deployment sets (docs/brokers.md, "Redis Sentinel over TLS").
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from textlstm.testing.ports import free_port
from textlstm.testing.redis_server import OwnRedis, redis_server_binary

MASTER_NAME = "textlstm-test"


def tls_directives(tls: dict[str, Path]) -> str:
    """redis.conf lines for a TLS-only server (plain port 0) that also speaks TLS to the
    servers it connects to (a replica to its master; a Sentinel to the nodes and the other
    Sentinels). Clients need not present a certificate."""
    return (
        f"tls-cert-file {tls['cert']}\ntls-key-file {tls['key']}\n"
        f"tls-ca-cert-file {tls['ca']}\ntls-auth-clients no\ntls-replication yes\n"
    )


class SentinelProcess:
    """One `redis-server --sentinel` with its own config file (Sentinel rewrites it)."""

    def __init__(self, workdir: Path, master_port: int, *, down_after_ms: int,
                 failover_timeout_ms: int, quorum: int = 2, tls: dict[str, Path] | None = None,
                 password: str | None = None,
                 sentinel_password: str | None = None) -> None:  # fmt: skip
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.dir / "sentinel.conf"
        listen = f"port 0\ntls-port {self.port}\n{tls_directives(tls)}" if tls else ""
        conf = (listen or f"port {self.port}\n") + f"bind 127.0.0.1\ndir {self.dir}\n"
        if sentinel_password:
            # Its own password, which the other Sentinels also present to it (sentinel-pass).
            conf += f"requirepass {sentinel_password}\nsentinel sentinel-pass {sentinel_password}\n"
        conf += (
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        if password:
            conf += f"sentinel auth-pass {MASTER_NAME} {password}\n"
        self.conf.write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelProcess:
        log = (self.dir / "sentinel.log").open("ab")
        argv = [redis_server_binary(), str(self.conf), "--sentinel"]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)


class OwnSentinelSet:
    """Master, replica and three Sentinels. `url` and `transport_options` are what workers and
    producers are given (`TEXTLSTM_BROKER_URL`, `TEXTLSTM_BROKER_TRANSPORT_OPTIONS`)."""

    def __init__(self, workdir: Path, *, down_after_ms: int = 2000,
                 failover_timeout_ms: int = 4000, tls: dict[str, Path] | None = None,
                 password: str | None = None,
                 sentinel_password: str | None = None) -> None:  # fmt: skip
        self.tls, self.password, self.sentinel_password = tls, password, sentinel_password
        node: tuple[str, ...] = ("--save", "")
        if password:
            node += ("--masterauth", password)  # either node may be the replica after failover
        if tls:
            node += ("--tls-replication", "yes")
        self.master = OwnRedis(
            workdir / "master", appendonly=False, password=password, tls=tls, extra_args=node
        )
        self.replica = OwnRedis(
            workdir / "replica",
            appendonly=False,
            password=password,
            tls=tls,
            extra_args=(*node, "--replicaof", "127.0.0.1", str(self.master.port)),
        )
        self.sentinels = [
            SentinelProcess(workdir / f"sentinel-{i}", self.master.port,
                            down_after_ms=down_after_ms, failover_timeout_ms=failover_timeout_ms,
                            tls=tls, password=password, sentinel_password=sentinel_password)
            for i in range(3)
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """`TEXTLSTM_BROKER_URL` as docs/brokers.md writes it: one `sentinel://` URL per
        Sentinel, the Redis master's password and database on the first only."""
        auth = f":{self.password}@" if self.password else ""
        first, *rest = self.sentinels
        return ";".join(
            [f"sentinel://{auth}127.0.0.1:{first.port}/0"]
            + [f"sentinel://127.0.0.1:{s.port}" for s in rest]
        )

    @property
    def sentinel_kwargs(self) -> dict[str, Any]:
        """How a client talks to the Sentinels themselves (password, TLS); {} when plain."""
        kwargs: dict[str, Any] = {}
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        if self.tls:
            # As docs/brokers.md gives it: redis-py verifies the certificate by default.
            kwargs.update(ssl=True, ssl_ca_certs=str(self.tls["ca"]))
        return kwargs

    @property
    def transport_options(self) -> dict[str, Any]:
        """`TEXTLSTM_BROKER_TRANSPORT_OPTIONS`."""
        options: dict[str, Any] = {"master_name": MASTER_NAME}
        if self.sentinel_kwargs:
            options["sentinel_kwargs"] = self.sentinel_kwargs
        return options

    @property
    def use_ssl(self) -> dict[str, Any]:
        """`TEXTLSTM_BROKER_USE_SSL`: TLS to the master, verified against the test's CA."""
        return {"ssl_ca_certs": str(self.tls["ca"])} if self.tls else {}

    def sentinel_client(self, port: int) -> Any:
        """A short-timeout client of the Sentinel on `port`."""
        import redis

        return redis.Redis(port=port, socket_timeout=1, **self.sentinel_kwargs)

    def start(self, timeout: float = 30.0) -> OwnSentinelSet:
        self.master.start()
        self.replica.start()
        for s in self.sentinels:
            s.start()
        self.wait(lambda: self._replica_synced(self.master) and self._sentinels_agree(),
                  timeout, "replica in sync and every Sentinel seeing it")  # fmt: skip
        return self

    def master_port(self) -> int | None:
        """The master's port as the Sentinels report it (None when none answers)."""
        import redis

        for s in self.sentinels:
            try:
                c = self.sentinel_client(s.port)
                addr = c.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
                c.close()
                if addr:
                    return int(addr[1])
            except (redis.RedisError, OSError):
                continue
        return None

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> float:
        """Wait until the Sentinels name another master and it answers as one; seconds taken."""
        t0 = time.monotonic()

        def promoted() -> bool:
            port = self.master_port()
            if port in (None, old_port):
                return False
            node = self.replica if self.replica.port == port else self.master
            info = node.client().info("replication")
            return bool(info.get("role") == "master") and self._discovered() == port

        # Done when a client finds the new master as the product's do (redis-py's discovery,
        # which skips a master any Sentinel it asks still flags as down), not only when one
        # Sentinel names it: under load the two can be seconds apart.
        self.wait(promoted, timeout, "the Sentinels to promote the replica")
        return time.monotonic() - t0

    def _discovered(self) -> int | None:
        """The master's port as redis-py's Sentinel discovery finds it (None: not found)."""
        import redis
        from redis.sentinel import Sentinel

        hosts = [("127.0.0.1", s.port) for s in self.sentinels]
        sentinel = Sentinel(hosts, sentinel_kwargs={"socket_timeout": 1, **self.sentinel_kwargs})
        try:
            return int(sentinel.discover_master(MASTER_NAME)[1])
        except (redis.RedisError, OSError):
            return None

    def node_at(self, port: int) -> OwnRedis:
        return self.master if self.master.port == port else self.replica

    def client(self) -> Any:
        """A client of the current master, found through the Sentinels."""
        from textlstm.wire.redis_layout import redis_client

        return redis_client(self.url, self.transport_options, self.use_ssl)

    def _replica_synced(self, master: OwnRedis) -> bool:
        info = master.client().info("replication")
        return bool(info.get("connected_slaves", 0) >= 1 and
                    info.get("slave0", {}).get("state") == "online")  # fmt: skip

    def _sentinels_agree(self) -> bool:
        import redis

        for s in self.sentinels:
            try:
                c = self.sentinel_client(s.port)
                replicas = c.execute_command("SENTINEL", "replicas", MASTER_NAME)
                others = c.execute_command("SENTINEL", "sentinels", MASTER_NAME)
                c.close()
            except (redis.RedisError, OSError):
                return False
            if not replicas or len(others) < 2:
                return False
        return True

    @staticmethod
    def wait(cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if cond():
                    return
            except Exception:  # noqa: BLE001, S110 - a node in the middle of changing role
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(0.1)

    def close(self) -> None:
        for s in self.sentinels:
            s.kill()
        self.replica.kill()
        self.master.kill()
