"""Throwaway TLS material for servers a test starts itself: a CA and one server certificate for
127.0.0.1 (and `localhost`) signed by it, valid for a day, written into a directory of the
test's own.

Made with the `openssl` command: the `cryptography` package is not among the project's
dependencies (nothing in the product needs it), and a test helper is no reason to add it.
Tests that need certificates skip where `openssl` is missing (`HAVE_OPENSSL`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CA_NAME = "textlstm-test-ca"
HAVE_OPENSSL = shutil.which("openssl") is not None


def make_certs(directory: Path) -> dict[str, Path]:
    """`{"ca": …, "cert": …, "key": …}`: a fresh CA and a server certificate signed by it, as
    `OwnRedis(tls=…)` and `OwnSentinelSet(tls=…)` take them. Every call makes a new CA, so a
    second call's `ca` is a foreign CA to the first's certificate."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "1", "-subj", f"/CN={CA_NAME}")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "redis.key", "-out", "redis.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "redis.crt", "-days", "1", "-extfile", "ext.cnf")  # fmt: skip
    return {"cert": d / "redis.crt", "key": d / "redis.key", "ca": d / "ca.crt"}
