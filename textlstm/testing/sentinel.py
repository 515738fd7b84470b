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
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from textlstm.testing.ports import free_port
from textlstm.testing.redis_server import OwnRedis, redis_server_binary

MASTER_NAME = "textlstm-test"


class SentinelProcess:
    """One `redis-server --sentinel` with its own config file (Sentinel rewrites it)."""

    def __init__(self, workdir: Path, master_port: int, *, down_after_ms: int,
                 failover_timeout_ms: int, quorum: int = 2) -> None:  # fmt: skip
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
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
                 failover_timeout_ms: int = 4000) -> None:  # fmt: skip
        node = ("--appendonly", "no", "--save", "")
        self.master = OwnRedis(workdir / "master", appendonly=False, extra_args=node[2:])
        self.replica = OwnRedis(
            workdir / "replica",
            appendonly=False,
            extra_args=(*node[2:], "--replicaof", "127.0.0.1", str(self.master.port)),
        )
        self.sentinels = [
            SentinelProcess(workdir / f"sentinel-{i}", self.master.port,
                            down_after_ms=down_after_ms, failover_timeout_ms=failover_timeout_ms)
            for i in range(3)
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return ";".join(f"sentinel://127.0.0.1:{s.port}/0" for s in self.sentinels)

    @property
    def transport_options(self) -> dict[str, Any]:
        return {"master_name": MASTER_NAME}

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
                c = redis.Redis(port=s.port, socket_timeout=1)
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

        sentinel = Sentinel([("127.0.0.1", s.port) for s in self.sentinels], socket_timeout=1)
        try:
            return int(sentinel.discover_master(MASTER_NAME)[1])
        except (redis.RedisError, OSError):
            return None

    def node_at(self, port: int) -> OwnRedis:
        return self.master if self.master.port == port else self.replica

    def client(self) -> Any:
        """A client of the current master, found through the Sentinels."""
        from textlstm.wire.redis_layout import redis_client

        return redis_client(self.url, self.transport_options)

    def _replica_synced(self, master: OwnRedis) -> bool:
        info = master.client().info("replication")
        return bool(info.get("connected_slaves", 0) >= 1 and
                    info.get("slave0", {}).get("state") == "online")  # fmt: skip

    def _sentinels_agree(self) -> bool:
        import redis

        for s in self.sentinels:
            try:
                c = redis.Redis(port=s.port, socket_timeout=1)
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
